# NovaVoice daemon image. Multi-stage: the build stage makes a virtual environment from the
# lock file (requirements/daemon.txt) plus the daemon's own packages (actors/, sessions/);
# the runtime stage copies only that environment. devkit/, tests/, bench/ never enter it.
#
#   podman build -t novavoice:latest .            # or: docker build -t novavoice:latest .
#   podman run --rm -p 8080:8080 -p 9090:9090 --env-file .env novavoice:latest
#
# Ports: 8080 carrier WebSockets (NOVAVOICE_LISTEN; /twilio/<assistant>, /asterisk/<assistant>),
#        9090 admin (NOVAVOICE_ADMIN_LISTEN; /healthz, /readyz, /metrics) - keep it private.
# A non-loopback listener needs every carrier in CARRIERS authenticated (Twilio:
# TWILIO_AUTH_TOKEN + TWILIO_PUBLIC_URL; Asterisk: ASTERISK_BASIC_AUTH or ASTERISK_BEARER_TOKEN)
# or the --insecure flag; see .env.example for every variable.
# Asterisk's Basic/bearer credentials there also need TLS: NOVAVOICE_TLS_CERT/KEY (mounted PEM
# files; SIGHUP reloads them) or NOVAVOICE_TLS_TERMINATED_UPSTREAM=1 behind a TLS proxy.
#
# The base is a build argument so the image can be built from a local or mirrored base
# (deploy/container/build-check.sh builds it from a debootstrapped Debian 12, whose python3 is
# 3.11). Both stages must use the same base: the venv's interpreter is a symlink into it.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/novavoice
# Dependencies first, from the lock file alone, so code changes reuse this layer.
COPY requirements/daemon.txt requirements/daemon.txt
RUN /opt/novavoice/bin/pip install --no-deps -r requirements/daemon.txt
COPY pyproject.toml README.md ./
COPY actors/ actors/
COPY sessions/ sessions/
# --no-deps: everything the daemon needs came from the lock file above; a dependency missing
# from it fails the import check below instead of being pulled unpinned.
RUN /opt/novavoice/bin/pip install --no-deps . \
 && /opt/novavoice/bin/python -m pip check \
 && /opt/novavoice/bin/python -c "import sessions.serve, actors.sonic.pool" \
 && /opt/novavoice/bin/python -m compileall -q /opt/novavoice

FROM ${BASE_IMAGE} AS runtime
# tini as PID 1: forwards SIGTERM to the daemon (which drains) and reaps any orphan;
# ca-certificates: the Nova Sonic client verifies Bedrock against the system store.
# Not version-pinned (DL3008): the base image's release decides the versions, and a pin
# would break every rebuild once Debian ships a security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 novavoice \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin novavoice
COPY --from=build /opt/novavoice /opt/novavoice
ENV PATH=/opt/novavoice/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NOVAVOICE_LISTEN=0.0.0.0:8080 \
    NOVAVOICE_ADMIN_LISTEN=0.0.0.0:9090
# The daemon reads an optional .env from its working directory; /tmp exists and is writable
# nowhere else, which suits a read-only root filesystem with an emptyDir or tmpfs on /tmp.
WORKDIR /tmp
EXPOSE 8080/tcp 9090/tcp
USER 10001:10001
# Liveness only (/healthz): readiness (/readyz) is the orchestrator's business, and a
# draining container must stay "healthy" until its calls end.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; port = os.environ.get('NOVAVOICE_ADMIN_LISTEN', ':9090').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
# SIGTERM starts the drain (readiness false, running calls continue up to DRAIN_TIMEOUT_MS);
# give the container at least that long to stop (docker stop -t, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "novavoice"]
CMD ["serve"]
