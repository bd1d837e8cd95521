# The sidecar image (the filter ships as a .wasm, see envoy/istio/README.md).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p paastis-sidecar

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/paastis-sidecar /usr/local/bin/paastis-sidecar
USER 65534:65534
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/paastis-sidecar"]
