# syntax=docker/dockerfile:1
#
# hybridprobe container image: one static binary on an empty base.
#
# Full build (any machine that can pull the Rust image):
#   docker build -t hybridprobe:0.1.0 .
#   podman build -t hybridprobe:0.1.0 .
#
# From a binary built outside (as CI does, where no base image can be pulled): the `binary`
# stage below is replaced by a directory holding `hybridprobe`, and the builder never runs.
#   RUSTFLAGS='-C target-feature=+crt-static' \
#     cargo build --release --locked --target x86_64-unknown-linux-gnu
#   mkdir -p /tmp/bin && cp target/x86_64-unknown-linux-gnu/release/hybridprobe /tmp/bin/
#   buildah build --build-context binary=/tmp/bin -t hybridprobe:0.1.0 .
#   (docker buildx build --build-context binary=/tmp/bin ... works the same way)

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# glibc linked statically: the same recipe CI tests, so the image runs what CI ran. The binary
# needs no NSS modules: glibc 2.34 and later carry `files` and `dns` host lookup inside libc.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/hybridprobe /out/hybridprobe

# The one file the runtime stage takes from a build; `--build-context binary=DIR` replaces it.
FROM scratch AS binary
COPY --from=builder /out/hybridprobe /hybridprobe

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hybridprobe" \
      org.opencontainers.image.description="Connectivity diagnostic agent for Kubernetes joined to on-premises networks: probes on-prem over the VPN path from the pod and host network namespaces and exports Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /hybridprobe /usr/local/bin/hybridprobe
# Non-root by default: `check`, `validate` and `smoke` need no privileges, nor does the agent
# when it checks only the pod network (deploy/overlays/no-host-privileges). The base DaemonSet
# overrides this with runAsUser 0 and every capability dropped but SYS_ADMIN, NET_RAW and
# NET_ADMIN (proc-1-host adds SYS_PTRACE): Kubernetes gives a non-root process the capabilities it adds only through file
# capabilities on the binary (which no_new_privs blocks and `COPY` may not carry) or ambient
# capabilities (which it does not offer). See docs/privileges.md.
USER 65532:65532
EXPOSE 9739
ENTRYPOINT ["/usr/local/bin/hybridprobe"]
CMD ["agent"]
