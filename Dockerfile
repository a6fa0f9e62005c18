# responder's container image: a static binary on distroless, running as non-root 65532.
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse --short HEAD) \
#     --build-arg BUILD_DATE=$(date -u +%Y%m%d-%H:%M:%S) -t responder .
# deploy/image_test.go runs this file's go build (same flags) and checks its entrypoint.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ARG BRANCH=main
ARG BUILD_DATE=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.Branch=${BRANCH} -X github.com/prometheus/common/version.BuildDate=${BUILD_DATE}" -o /out/responder ./cmd/responder
# The storage path, owned by the runtime user (a volume mounted there keeps fsGroup ownership).
RUN mkdir -p /out/var/lib/responder /out/etc/responder

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="responder" \
      org.opencontainers.image.description="Turns Alertmanager alerts and health probes into safe, audited remediation." \
      org.opencontainers.image.source="https://github.com/responder-sre/responder" \
      org.opencontainers.image.url="https://github.com/responder-sre/responder" \
      org.opencontainers.image.documentation="https://github.com/responder-sre/responder#readme" \
      org.opencontainers.image.vendor="responder" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${BUILD_DATE}"
COPY --from=build /out/responder /responder
COPY --from=build --chown=65532:65532 /out/var/lib/responder /var/lib/responder
COPY --from=build --chown=65532:65532 /out/etc/responder /etc/responder
USER 65532:65532
EXPOSE 9095
ENTRYPOINT ["/responder"]
CMD ["serve", "--config.file=/etc/responder/responder.yml", "--storage.path=/var/lib/responder"]
