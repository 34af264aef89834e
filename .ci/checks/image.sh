#!/usr/bin/env bash
# Builds the container image the way CI can here: a static release binary built by cargo,
# handed to the Dockerfile's runtime stage with `--build-context binary=DIR` (no base image is
# pulled). Then checks its size, user and labels, and runs the binary inside it: `--version`,
# and a `smoke` call that shows name resolution works in an image with no libc files.
# Everything lives in a temporary container storage that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_BYTES=$((15 * 1000 * 1000))
IMAGE=localhost/hybridprobe:ci
TARGET=x86_64-unknown-linux-gnu

for tool in buildah podman file cargo; do
  command -v "$tool" >/dev/null || { echo "image: $tool not found (see .ci/packages.txt)" >&2; exit 1; }
done

work=$(mktemp -d)
storage=(--root "$work/storage" --runroot "$work/run" --storage-driver overlay)
cleanup() {
  podman "${storage[@]}" system reset --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

version=$(cargo metadata --no-deps --format-version 1 --locked \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="hybridprobe"))')

echo "image: static release binary"
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$TARGET" --quiet
binary="target/$TARGET/release/hybridprobe"
file "$binary"
file "$binary" | grep -Eq 'static(-pie)? linked|statically linked' \
  || { echo "image: $binary is not statically linked" >&2; exit 1; }
mkdir "$work/bin"
cp "$binary" "$work/bin/hybridprobe"

echo "image: build the runtime stage from that binary"
buildah "${storage[@]}" build --quiet \
  --build-context binary="$work/bin" \
  --build-arg VERSION="$version" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -t "$IMAGE" . >/dev/null

inspect() { podman "${storage[@]}" image inspect --format "$1" "$IMAGE"; }
size=$(inspect '{{.Size}}')
user=$(inspect '{{.Config.User}}')
label=$(inspect '{{index .Labels "org.opencontainers.image.version"}}')
echo "image: $size bytes, user $user, version label $label"
[ "$size" -le "$MAX_BYTES" ] || { echo "image: $size bytes is over the $MAX_BYTES budget" >&2; exit 1; }
[ "$user" = "65532:65532" ] || { echo "image: runs as '$user', expected 65532:65532" >&2; exit 1; }
[ "$label" = "$version" ] || { echo "image: version label '$label', expected $version" >&2; exit 1; }

# This sandbox lacks CAP_SYS_RESOURCE, so podman's default raised NOFILE/NPROC limits fail, and
# crun refuses its hybrid cgroup layout; runc with limits at or below the current ones works.
run_in_image() {
  podman "${storage[@]}" --runtime runc run --rm --network none \
    --ulimit nofile=1024:4096 --ulimit nproc=1024:2048 "$IMAGE" "$@"
}
if ! out=$(run_in_image --version 2>&1); then
  echo "image: cannot run a container here ($out); running the binary extracted from the image" >&2
  container=$(podman "${storage[@]}" create "$IMAGE")
  podman "${storage[@]}" cp "$container:/usr/local/bin/hybridprobe" "$work/extracted"
  podman "${storage[@]}" rm "$container" >/dev/null
  run_in_image() { setpriv --reuid=65532 --regid=65532 --clear-groups -- "$work/extracted" "$@"; }
  out=$(run_in_image --version)
fi
echo "image: --version says: $out"
[ "$out" = "hybridprobe $version" ] || { echo "image: expected 'hybridprobe $version'" >&2; exit 1; }

# `localhost` resolves through /etc/hosts inside the image; nothing listens on port 9, so the
# check must fail, naming the resolved address.
set +e
smoke=$(run_in_image smoke --agents localhost:9 --expect-nodes 1 --timeout 2s 2>&1)
code=$?
set -e
echo "$smoke"
[ "$code" -eq 1 ] || { echo "image: smoke exited $code, expected 1" >&2; exit 1; }
echo "$smoke" | grep -Eq '^DOWN +- +(127\.0\.0\.1|\[::1\]):9 ' \
  || { echo "image: smoke did not resolve localhost inside the image" >&2; exit 1; }
echo "image: ok"
