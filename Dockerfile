# pgflo image: one static binary on a distroless base, running as a non-root
# user. `docker run <image> replicator --host … --group …` runs pg_flo's
# command line; `docker run <image> run /etc/pgflo/replicator.yaml` a pipeline.
#
#   docker build --build-arg VERSION=v1.0.0 --build-arg COMMIT=$(git rev-parse --short HEAD) \
#     --build-arg DATE_BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t pgflo .

# Build stage: a static binary (no cgo), reproducible paths.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=none
ARG DATE_BUILT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.dateBuilt=${DATE_BUILT}" \
      -o /out/pgflo .

# Final stage: CA certificates and time zones, no shell, uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgflo /usr/local/bin/pgflo
# Ready-to-run pipelines (every value overridable through PGFLO_* variables).
COPY resources/ /etc/pgflo/
WORKDIR /home/nonroot
USER 65532:65532
# Benthos' HTTP server: /metrics (Prometheus), /ready, /ping.
EXPOSE 4195
ENTRYPOINT ["pgflo"]
CMD ["--help"]
