# syntax=docker/dockerfile:1
#
# drover's image: a static (musl) binary on a distroless base, run as a
# non-root user. The binary is built with --no-default-features: without
# the `demo` feature, so without `drover demo` and the simulator (kubesim)
# it runs on; the controller has no use for them in production.
# (crates/drover/tests/deps.rs checks that kubesim then stays out.)
# Build from the repository root:
#
#   docker build -t registry.example.com/drover:0.1.0 .
#
# (drover's development environment has no container engine: this file is
# not built by its tests.)

# Alpine's Rust targets musl natively, so the binary is static.
FROM rust:1.89-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p drover --no-default-features \
 && cp target/release/drover /drover \
 && /drover --version

# Only the binary and CA certificates; uid/gid 65532 ("nonroot").
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /drover /usr/local/bin/drover
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/drover"]
CMD ["run", "--leader-elect", "--namespace", "drover-system", "--http-addr", "0.0.0.0:8080"]
