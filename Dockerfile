# trailhook container image: build on Debian 12, run on Debian 12 slim as a non-root user.
#
#   docker build -t trailhook:0.1.0 .
#   docker run -d --name trailhook -p 127.0.0.1:8080:8080 \
#       -v trailhook-state:/var/lib/trailhook \
#       -v "$PWD/deploy/secrets/trailhook_api_keys:/run/secrets/trailhook_api_keys:ro" \
#       -e TRAILHOOK_API_KEYS_FILE=/run/secrets/trailhook_api_keys \
#       trailhook:0.1.0
#
# deploy/compose.yaml does the same with Docker Compose, deploy/kubernetes/ on Kubernetes.
# tests/deploy/test_dockerfile.py checks this file against the build (ctest deploy_dockerfile):
# keep the two stages on the same base, the build packages equal to `.ci/deps build`, and the
# runtime packages covering every library the binary links.

# ---- build -----------------------------------------------------------------------------------
# Pinned by tag; for reproducible builds pin the digest too (debian:12-slim@sha256:...).
FROM debian:12-slim AS build

# The -dev packages and the toolchain: exactly .ci/deps's `build` list, installed by the script
# itself so the two cannot drift apart.
COPY .ci/deps /src/.ci/deps
RUN sh /src/.ci/deps build && rm -rf /var/lib/apt/lists/*

# Only what the build reads (.dockerignore keeps build*/, .git, var/ and secrets out anyway).
# The rule specs in config/rules are compiled into the binary.
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY include/ include/
COPY src/ src/
COPY config/ config/

# Release, without the tests (they need cmocka, which the image does not); stripped.
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DTH_TESTS=OFF \
    && cmake --build /build -j "$(nproc)" \
    && install -D -s -m 0755 /build/trailhook /out/trailhook \
    && /out/trailhook --version

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:12-slim

LABEL org.opencontainers.image.title="trailhook" \
      org.opencontainers.image.description="AWS CloudTrail events over HTTP, a Panther rule, alerts to Slack, PagerDuty and webhooks" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/debian:12-slim"

# The shared libraries the binary links (their own dependencies come with them) and the CA
# bundle libcurl verifies Slack's and PagerDuty's certificates with. No compiler, no -dev.
# A fixed UID/GID (10001) so Kubernetes' runAsNonRoot can check it and volumes can be
# chown'ed to it; the state directory belongs to that user (a new named volume copies that).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates \
        libcurl4 \
        libhiredis0.14 \
        libjansson4 \
        libmicrohttpd12 \
        libsqlite3-0 \
        libyaml-0-2 \
        zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 trailhook \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/trailhook --no-create-home \
        --shell /usr/sbin/nologin trailhook \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/trailhook

COPY --from=build /out/trailhook /usr/local/bin/trailhook
# The documented defaults; mount your own file here (or set TRAILHOOK_CONFIG) for more than the
# environment can say, e.g. several destinations.
COPY config/trailhook.yml /etc/trailhook/trailhook.yml

# Every key of trailhook.yml can be set as TRAILHOOK_<KEY> (an unknown TRAILHOOK_* variable stops
# the start). The service refuses to listen on 0.0.0.0 without credentials, so this image does
# not start until you give it some. Pass them as files from a mounted secret, not as plain
# environment values:
#   TRAILHOOK_API_KEYS_FILE=/run/secrets/trailhook_api_keys     one key a line (or comma list)
#   TRAILHOOK_BASIC_AUTH_FILE=/run/secrets/trailhook_basic_auth "user:password" a line
#   TRAILHOOK_SLACK_WEBHOOK_URL_FILE=/run/secrets/slack_webhook_url
#   TRAILHOOK_PAGERDUTY_ROUTING_KEY_FILE=/run/secrets/pagerduty_routing_key
# The files must be readable by UID 10001. TRAILHOOK_ADMIN_LISTEN=0.0.0.0:9090 moves /metrics
# (and a second /healthz) to their own port; the HEALTHCHECK follows it.
ENV TRAILHOOK_CONFIG=/etc/trailhook/trailhook.yml \
    TRAILHOOK_LISTEN=0.0.0.0:8080 \
    TRAILHOOK_STATE_DIR=/var/lib/trailhook

# Alerts, dedup windows, seen event IDs and the delivery outbox (SQLite): keep it on a volume.
VOLUME ["/var/lib/trailhook"]
EXPOSE 8080

USER 10001:10001

# /healthz on the listen (or admin_listen) address, 0.0.0.0 read as 127.0.0.1; 3 s timeout inside.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["trailhook", "healthcheck"]

# SIGTERM: new requests get 503, requests in flight finish, deliveries get drain_grace_seconds
# (default 10), exit 0. Give the container more than that to stop (docker stop -t 30,
# compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["trailhook"]
CMD ["serve"]
