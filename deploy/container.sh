#!/usr/bin/env bash
# Build the project's image here and use it as a visitor would.
#
#   deploy/container.sh                 # build, start, check in Chromium, restart, check again
#   KEEP=1 deploy/container.sh          # leave the container running afterwards
#
# Makes a stand-in for BASE_IMAGE (default python:3.11-slim) where no registry serves it,
# builds ./Dockerfile with buildah (TORCH_INDEX: torch's wheel index; the default is the
# CPU wheels, which this machine cannot reach: TORCH_INDEX=https://pypi.org/simple here),
# starts it with podman and a volume, waits for its HEALTHCHECK, and in headless Chromium:
# the start page shows its examples, See a class makes a picture, the picture is in the
# volume, the app cannot write to its own code, and after a restart the picture is shown
# again from disk. Writes deploy/out/container.json with the figures.

source "$(dirname "$0")/lib.sh"

IMAGE="${IMAGE:-localhost/dgn-explorer:dev}"
NAME="${NAME:-dgn-try}"
VOLUME="${VOLUME:-dgn-try-data}"
PORT="${PORT:-8599}"
URL="http://127.0.0.1:$PORT"
SEED="${SEED:-$(( RANDOM % 1000 + 1000 ))}"   # a seed not made before in this volume
REPORT="$OUT/container.json"

base=$(pull_or_standin "${BASE_IMAGE:-python:3.11-slim}" python)
log "base image: $base"
t0=$EPOCHREALTIME
build_image "$base" "$IMAGE"
build_s=$(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { printf "%.0f", a - b }')
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
torch_mb=$(podman run --rm --entrypoint sh "$IMAGE" -c 'cd "$(python -c "import site; print(site.getsitepackages()[0])")" && du -sm torch nvidia triton 2>/dev/null | awk "{s+=\$1} END {print s}"')
log "built $IMAGE in $build_s s: $(( size / 1000000 )) MB (torch and its CUDA libraries: $torch_mb MB)"

podman rm -f "$NAME" >/dev/null 2>&1 || true
podman run -d --name "$NAME" -p "127.0.0.1:$PORT:8501" -v "$VOLUME:/data" "$IMAGE" >/dev/null
trap '[ -n "${KEEP:-}" ] || podman rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
healthy_s=$(wait_healthy "$NAME" 180)
log "healthy after $healthy_s s"

start=$(python "$ROOT/deploy/check_app.py" --url "$URL" --shots "$OUT" start)
log "start page: $start"
made=$(python "$ROOT/deploy/check_app.py" --url "$URL" --shots "$OUT" see --seed "$SEED" --expect made)
log "See a class: $made"
in_volume=$(podman exec "$NAME" sh -c "ls /data/results/efficientnet_lite0/*/seed$SEED/*.png | wc -l")
[ "$in_volume" -ge 1 ] || { log "the picture is not in the volume"; exit 1; }
if podman exec "$NAME" sh -c 'touch /app/dgncore/written-by-the-app' 2>/dev/null; then
  log "the app can write to its own code"; exit 1
fi
whoami_in=$(podman exec "$NAME" id -u)

podman restart "$NAME" >/dev/null
restart_healthy_s=$(wait_healthy "$NAME" 180)
again=$(python "$ROOT/deploy/check_app.py" --url "$URL" --shots "$OUT" see --seed "$SEED" --expect saved)
log "after a restart: $again"

cat > "$REPORT" <<JSON
{"image": "$IMAGE", "base": "$base", "torch_index": "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}",
 "build_s": $build_s, "image_bytes": $size, "torch_and_cuda_mb": ${torch_mb:-null},
 "healthy_s": $healthy_s, "restart_healthy_s": $restart_healthy_s, "uid": $whoami_in, "pictures_in_volume": $in_volume,
 "start": $start, "see": $made, "after_restart": $again}
JSON
log "report: $REPORT"
cat "$REPORT"
