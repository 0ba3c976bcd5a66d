#!/usr/bin/env bash
# Build the image and show that it serves, on a machine where containers cannot be run.
#
# Builds the Dockerfile with podman (chroot isolation, which needs no cgroups), creates a container
# from it without starting it, mounts that container's root filesystem, and runs the image's own
# ENTRYPOINT + CMD with its ENV and USER there through chroot, on a free port of this machine. Then
# GET /health, one chat completion, and a look at /metrics. Run as root, from the repository root:
#
#   deploy/check-image.sh
#
# Environment: BASE (the base image; default localhost/debian-bookworm:base), WHEELS_DIR (a folder
# of wheels mounted into the build, e.g. one holding the CPU torch wheel; default /opt/wheels when it
# exists), TORCH_INDEX_URL (default: empty when WHEELS_DIR is used, else the Dockerfile's CPU index),
# PIP_CERT_FILE (a CA bundle for pip in the build; default: $PIP_CERT, else the system's),
# IMAGE (default chatstream:cpu-check), KEEP=1 (keep the image and container afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-chatstream:cpu-check}
BASE=${BASE:-localhost/debian-bookworm:base}
WHEELS_DIR=${WHEELS_DIR:-$( [ -d /opt/wheels ] && echo /opt/wheels || true )}
build_args=(--build-arg "BASE=$BASE")
# pip in the build trusts what pip here trusts (e.g. a proxy's CA).
PIP_CERT_FILE=${PIP_CERT_FILE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}
if [ -n "$PIP_CERT_FILE" ] && [ -f "$PIP_CERT_FILE" ]; then
    build_args+=(--volume "$PIP_CERT_FILE:/etc/ssl/certs/build-ca.crt:ro" --build-arg PIP_CERT=/etc/ssl/certs/build-ca.crt)
fi
if [ -n "$WHEELS_DIR" ]; then
    build_args+=(--volume "$WHEELS_DIR:/wheels:ro" --build-arg WHEELS=/wheels
                 --build-arg "TORCH_INDEX_URL=${TORCH_INDEX_URL:-}")
elif [ -n "${TORCH_INDEX_URL+x}" ]; then
    build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
fi

echo "== building $IMAGE from $BASE"
start=$(date +%s)
podman build --isolation chroot --format docker "${build_args[@]}" -t "$IMAGE" .
echo "== built in $(( $(date +%s) - start )) s; $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

cid=$(podman create "$IMAGE")
root=$(podman mount "$cid")
log=$(mktemp)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2> /dev/null && wait "$server" 2> /dev/null || true
    for m in sys dev proc; do umount "$root/$m" 2> /dev/null || true; done
    podman umount "$cid" > /dev/null || true
    if [ -z "${KEEP:-}" ]; then podman rm "$cid" > /dev/null || true; fi
    rm -f "$log"
}
trap cleanup EXIT
for m in proc dev sys; do mount --bind "/$m" "$root/$m"; done

# The image's own configuration: what docker run would do.
mapfile -t env_vars < <(podman image inspect "$IMAGE" --format '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t command < <(podman image inspect "$IMAGE" \
    --format '{{range .Config.Entrypoint}}{{println .}}{{end}}{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
uid=$(chroot "$root" id -u "$user")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "== running as $user: ${command[*]} --port $port"
chroot --userspec="$uid:$uid" "$root" /usr/bin/env -i "${env_vars[@]}" HOME=/opt/chatstream \
    "${command[@]}" --port "$port" > "$log" 2>&1 &
server=$!

url="http://127.0.0.1:$port"
for _ in $(seq 1800); do
    if curl -fs "$url/health" > /dev/null 2>&1; then break; fi
    if ! kill -0 "$server" 2> /dev/null; then cat "$log"; echo "== the server exited"; exit 1; fi
    sleep 0.5
done
cat "$log"
echo "== GET /health"
curl -fsS "$url/health"; echo
echo "== POST /v1/chat/completions"
curl -fsS "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "SmolLM2-135M-Instruct", "max_tokens": 32, "temperature": 0,
         "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
echo
echo "== /metrics (vllm: names)"
curl -fsS "$url/metrics" | grep -E '^vllm:(e2e_request_latency_seconds_count|generation_tokens_total)'
echo "== the image serves"
