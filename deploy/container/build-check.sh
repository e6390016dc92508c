#!/usr/bin/env bash
# Build the NovaVoice image with podman and check it really runs: non-root, tini as PID 1,
# /healthz healthy, /readyz ready, no devkit/tests inside, SIGTERM ends it within the drain.
# Not part of `make test` (it takes minutes and needs podman: apt-get install -y podman).
#
#   deploy/container/build-check.sh                          # base: python:3.11-slim (a registry)
#   deploy/container/build-check.sh --debootstrap            # no registry: build a local base
#
# --debootstrap makes localhost/novavoice-base:bookworm from a debootstrapped Debian 12
# (python3 3.11, python3-venv; needs debootstrap and a Debian mirror) and builds FROM it.
# Extra arguments after -- go to `podman build` (for example --build-arg PIP_INDEX_URL=...).
#
# Inside a nested sandbox (cgroup v1/hybrid, no CAP_SYS_RESOURCE) podman's defaults fail
# ("cgroups in hybrid mode not supported", "setrlimit RLIMIT_NPROC: Operation not permitted");
# there use runc (apt-get install -y runc) and limits the sandbox allows:
#   PODMAN_RUNTIME=runc PODMAN_ULIMITS="--ulimit nofile=20000:20000 --ulimit nproc=32768:32768"
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNTIME=()
[[ -n ${PODMAN_RUNTIME:-} ]] && RUNTIME=(--runtime "$PODMAN_RUNTIME")
read -ra ULIMITS <<<"${PODMAN_ULIMITS:-}"
podman() { command podman "${RUNTIME[@]}" "$@"; }

IMAGE=localhost/novavoice:build-check
BASE_IMAGE=python:3.11-slim
WORK=${BUILD_CHECK_WORK:-/tmp/novavoice-build-check}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [[ ${1:-} == --debootstrap ]]; then
  shift
  BASE_IMAGE=localhost/novavoice-base:bookworm
  if ! podman image exists "$BASE_IMAGE"; then
    mkdir -p "$WORK"
    if [[ ! -x $WORK/rootfs/usr/bin/python3 ]]; then
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR"
    fi
    # The image's apt must reach the same mirror as this machine (sources as debootstrap set).
    tar -C "$WORK/rootfs" -c . | podman import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["python3"]' - "$BASE_IMAGE"
  fi
fi
[[ ${1:-} == -- ]] && shift

# Host networking for RUN steps: the build reaches PyPI and Debian as this machine does.
# Host CA bundle mounted for pip, in case this network re-signs TLS.
podman build --format docker --network host "${ULIMITS[@]}" \
  --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro \
  --env PIP_CERT=/etc/ssl/certs/host-ca.crt \
  --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$@" .

echo "== image"
podman image inspect "$IMAGE" --format \
  'user={{.Config.User}} entrypoint={{.Config.Entrypoint}} cmd={{.Config.Cmd}} stopsignal={{.Config.StopSignal}} exposed={{.Config.ExposedPorts}} size={{.Size}}'
podman image inspect "$IMAGE" --format '{{json .Config.Healthcheck}}'

run() { podman run --rm --network host "${ULIMITS[@]}" --entrypoint "$1" "$IMAGE" "${@:2}"; }
echo "== contents"
[[ $(run id -u) == 10001 ]] || { echo "FAIL: not uid 10001"; exit 1; }
run python3 -c "import sessions, actors; print('daemon importable')"
if run python3 -c "import devkit" 2>/dev/null; then echo "FAIL: devkit is in the image"; exit 1; fi
if run python3 -c "import pytest" 2>/dev/null; then echo "FAIL: pytest is in the image"; exit 1; fi
echo "no devkit, no pytest: ok"

echo "== run"
read -r PORT ADMIN < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
NAME=novavoice-build-check-$$
podman run -d --name "$NAME" --network host "${ULIMITS[@]}" --read-only --tmpfs /tmp \
  -e NOVAVOICE_LISTEN=127.0.0.1:$PORT -e NOVAVOICE_ADMIN_LISTEN=127.0.0.1:$ADMIN \
  -e DRAIN_TIMEOUT_MS=5000 -e AWS_REGION=us-east-1 "$IMAGE" >/dev/null
trap 'podman rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
ready=
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$ADMIN/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.5
done
if [[ -z $ready ]]; then
  echo "FAIL: not ready within 60 s"; podman logs "$NAME" 2>&1 | tail -n 20; exit 1
fi
echo "healthz: $(curl -fsS "http://127.0.0.1:$ADMIN/healthz")"
echo "readyz:  $(curl -fsS "http://127.0.0.1:$ADMIN/readyz")"
curl -fsS "http://127.0.0.1:$ADMIN/metrics" | grep -m1 '^novavoice_calls_active'
podman healthcheck run "$NAME" && echo "HEALTHCHECK: healthy"
echo "PID 1: $(podman exec "$NAME" cat /proc/1/cmdline | tr '\0' ' ')"
start=$(date +%s.%N)
podman stop -t 20 "$NAME" >/dev/null
echo "stopped by SIGTERM in $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s," \
  "exit code $(podman inspect "$NAME" --format '{{.State.ExitCode}}')"
podman logs "$NAME" 2>&1 | tail -n 3
echo "BUILD CHECK PASSED"
