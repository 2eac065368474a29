# Build: a static binary (pure-Go SQLite, no cgo).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/user-events-router . \
 && mkdir -p /out/data \
 && echo 'router:x:65532:65532:router:/data:/sbin/nologin' > /out/passwd \
 && echo 'router:x:65532:' > /out/group

# Run: nothing but the binary, CA certificates and an unprivileged user.
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build /out/user-events-router /usr/local/bin/user-events-router
USER 65532:65532
# Inside a container the embedded NATS server must be reachable from outside.
ENV DATA_DIR=/data \
    HTTP_ADDR=:3000 \
    NATS_LISTEN=0.0.0.0:4222
VOLUME /data
EXPOSE 3000 4222 8081
ENTRYPOINT ["/usr/local/bin/user-events-router"]
CMD ["serve"]
