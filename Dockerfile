# syntax=docker/dockerfile:1
# One image, two binaries: /operator (the ChatRoom operator) and /chatserver
# (the chat pods it deploys). Build with `make docker-build IMG=...`.
#
# test/chart/image_test.go runs this file's `go build` line outside Docker and
# checks both binaries come out static, so keep that line a plain `go build`.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Module downloads get their own layer: source edits do not refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
# CGO off gives static binaries that run on distroless/static (no libc).
ENV CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/operator ./cmd/chatserver

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/operator /operator
COPY --from=build /out/chatserver /chatserver
# 65532 is distroless' "nonroot"; numeric so Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080
# The chat server is the default: chat pods run the image as it is (the
# operator sets no command), and `docker run IMAGE` gives a one-process chat
# on :8080. The Helm chart runs the operator with command ["/operator"].
ENTRYPOINT ["/chatserver"]
