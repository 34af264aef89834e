# Shared by the lab benchmarks in bench/ (sourced, not run): they need root, install the Debian
# packages they use when missing, and build what the image ships (glibc linked statically, as
# in the Dockerfile), so the numbers are those of the shipped binary.

if [ "$(id -u)" != 0 ]; then
  echo "$0: the namespace lab needs root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_updated=

# need PACKAGE COMMAND: installs the Debian package PACKAGE unless COMMAND is on the PATH.
need() {
  command -v "$2" >/dev/null && return 0
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  echo "installing $1"
  apt-get install -y -qq --no-install-recommends "$1" >/dev/null
}

# What the lab itself runs (tests/lab), plus dnsmasq for DNS targets and taskset for pinning.
need iproute2 ip
need nftables nft
need curl curl
need iputils-ping ping
need procps sysctl
need dnsmasq-base dnsmasq
need util-linux taskset

export RUSTFLAGS='-C target-feature=+crt-static'
shipped_target=(--target x86_64-unknown-linux-gnu)
