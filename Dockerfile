# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /build

# sqlx queries are checked at run time; the build never needs a database.
ENV SQLX_OFFLINE=true

# migrations/ and openapi.yaml are embedded at compile time, so the whole
# project (minus .dockerignore) is the build context.
COPY . .
RUN cargo build --release --locked \
 && cp target/release/bizkit-mirror /usr/local/bin/bizkit-mirror

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 bizkit \
 && useradd --system --uid 10001 --gid bizkit --home-dir /data --shell /usr/sbin/nologin bizkit \
 && mkdir -p /data \
 && chown bizkit:bizkit /data

COPY --from=builder /usr/local/bin/bizkit-mirror /usr/local/bin/bizkit-mirror

USER bizkit:bizkit
WORKDIR /data
ENV BIND=0.0.0.0:8080
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1

ENTRYPOINT ["bizkit-mirror"]
CMD ["serve"]
