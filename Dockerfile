# syntax=docker/dockerfile:1
# baton: `docker build -t baton .`, then `docker run -p 127.0.0.1:8080:8080
# baton` (or deploy/compose.yaml, or deploy/k8s/). The image runs `baton
# serve` as an unprivileged user, keeps its state in /var/lib/baton, and
# reports its health with `baton health` (its /readyz).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cargo's caches live in the build cache, not in a layer: a change to the
# source rebuilds only what changed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p baton-cli \
    && install -D --strip target/release/baton /out/baton

FROM debian:bookworm-slim
# tini reaps what tasks leave behind and passes SIGTERM on, so a drain
# begins when the container is asked to stop; bash and coreutils run `run:`
# tasks; ca-certificates lets `http` tasks and agents speak TLS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/baton --create-home baton
COPY --from=build /out/baton /usr/local/bin/baton
USER 10001:10001
WORKDIR /var/lib/baton
ENV BATON_HOME=/var/lib/baton/.baton \
    BATON_SERVER__BIND=0.0.0.0:8080
VOLUME ["/var/lib/baton"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["baton", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "baton"]
CMD ["serve"]
