# The zilla image: the gateway and the bundled SSE backend, built from this repository.
#   docker build -t zilla .
#   docker run -p 7114:7114 -v $PWD/zilla.yaml:/etc/zilla/zilla.yaml zilla
# As Zilla's image: the config is /etc/zilla/zilla.yaml and the engine directory (ready file,
# `zilla metrics`) is /var/run/zilla, so `test -f /var/run/zilla/ready` is a health check.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p zilla -p zilla-sse-backend

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/run/zilla zilla \
 && mkdir -p /etc/zilla /var/run/zilla \
 && chown zilla /var/run/zilla
COPY --from=build /src/target/release/zilla /usr/local/bin/zilla
COPY --from=build /src/target/release/zilla-sse-server /usr/local/bin/zilla-sse-server
COPY examples/sse.proxy/zilla.yaml /etc/zilla/zilla.yaml
USER zilla
WORKDIR /var/run/zilla
EXPOSE 7114 7190
HEALTHCHECK --interval=5s --timeout=2s CMD test -f /var/run/zilla/ready
# SIGTERM drains (zilla.engine.drain.timeout, 30 s): give `docker stop -t` more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["zilla"]
CMD ["start", "-c", "/etc/zilla/zilla.yaml", "-P", "zilla.engine.directory=/var/run/zilla"]
