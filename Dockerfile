# samepaged and the samepage CLI in a container (docs/deployment.md).
#
#   docker build -t registry.example.com/samepage/samepage:0.1.0 .
#   docker run -d --name samepaged -v samepage-run:/run/samepage \
#     --security-opt seccomp=unconfined registry.example.com/samepage/samepage:0.1.0 --allow-uid 1000
#
# seccomp=unconfined (or a profile that allows io_uring_setup, io_uring_enter and
# io_uring_register): samepaged's event loop is io_uring, which recent default profiles block.

ARG SWIFT_VERSION=6.3
ARG DEBIAN_RELEASE=bookworm

# --- build: the Swift toolchain image plus the two C libraries' headers ---
FROM swift:${SWIFT_VERSION}-${DEBIAN_RELEASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libxxhash-dev liburing-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Manifests first, so that a change to the sources does not fetch the dependencies again.
COPY Package.swift ./
RUN swift package resolve
# The manifest's graph names the test targets too, so their folders come along (not built).
COPY Sources ./Sources
COPY Tests ./Tests
# --static-swift-stdlib: the Swift runtime is linked in, so the runtime image needs no Swift
# libraries, only Debian's libxxhash0 and liburing2 (DeploymentTests checks this against ldd).
RUN swift build -c release --static-swift-stdlib --product samepaged \
 && swift build -c release --static-swift-stdlib --product samepage \
 && install -D -m 0755 "$(swift build -c release --show-bin-path)/samepaged" /out/samepaged \
 && install -D -m 0755 "$(swift build -c release --show-bin-path)/samepage" /out/samepage

# --- runtime: Debian slim with the two shared libraries and an unprivileged user ---
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libxxhash0 liburing2 \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid and gid: Kubernetes manifests and app containers name them (--allow-uid,
# fsGroup), and a region's memfd belongs to the server's uid (docs/security.md).
RUN groupadd --system --gid 10001 samepage \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin samepage \
 && install -d -o 10001 -g 10001 -m 0755 /run/samepage
COPY --from=build /out/samepaged /usr/local/bin/samepaged
COPY --from=build /out/samepage /usr/local/bin/samepage
ENV SAMEPAGE_SOCKET=/run/samepage/samepaged.sock
# The socket lives here; share the volume with the clients (another container, or the host).
VOLUME ["/run/samepage"]
USER 10001:10001
# samepage ping connects through the socket, says hello and waits for pong: the real protocol.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["samepage", "ping"]
ENTRYPOINT ["samepaged"]
