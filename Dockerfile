# The router image: a static binary (pure-Go SQLite, no cgo) in scratch.
#
#   docker build -t user-events-router \
#     --build-arg VERSION="$(git describe --tags --always)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# Checked by e2e/deploy_test.go (TestDeployDockerfile): no Docker engine needed.

# Build.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version `user-events-router version` prints (the variable version in
# package cli: -X takes the package's import path).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/social/user-events-router/cli.version=${VERSION}" -o /out/user-events-router . \
 && mkdir -p /out/data \
 && echo 'router:x:65532:65532:router:/data:/sbin/nologin' > /out/passwd \
 && echo 'router:x:65532:' > /out/group

# Run: nothing but the binary, CA certificates and an unprivileged user.
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/social/user-events-router
LABEL org.opencontainers.image.title="user-events-router" \
      org.opencontainers.image.description="Carries the Auth Service's user events (NATS JetStream, HTTP fallback) into profile-sync commands in SQL" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/README.md"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build /out/user-events-router /usr/local/bin/user-events-router
USER 65532:65532
# The Auth Service (ingress) and the kubelet or Prometheus (admin) reach the
# router from outside the container, so both listen on every interface.
# ADMIN_ADDR beyond loopback makes ADMIN_TOKEN required: give it at run
# time, from a secret (compose: an environment variable; Kubernetes: a
# Secret). The embedded NATS server, used only without NATS_URL, keeps its
# loopback default (NATS_LISTEN): it has no authentication. Other
# containers use a real NATS server (deploy/compose.yaml).
ENV DATA_DIR=/data \
    HTTP_ADDR=:3000 \
    ADMIN_ADDR=:8081
VOLUME /data
EXPOSE 3000 8081
# Ready = can take events (the database takes inserts), not NATS: see
# README, Operations.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/user-events-router", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/user-events-router"]
CMD ["serve"]
