# Shared by deploy/container.sh and deploy/stack.sh (source it; it runs nothing itself).
#
# Podman with runc, limits this machine allows, and stand-in images made from Debian
# packages where no registry serves python:3.11-slim or redis (docs/hosting.md, "Built
# and run here").

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/deploy/out}"
mkdir -p "$OUT"

# podman's default runtime (crun) refuses this kind of machine's cgroups, and its default
# ulimits exceed what a container may set here: a containers.conf of our own says so.
export CONTAINERS_CONF="$OUT/containers.conf"
cat > "$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Sn):$(ulimit -Hn)", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF

# the CA bundle pip needs where the index is reached through a TLS proxy (empty: none)
CA_BUNDLE="${CA_BUNDLE:-$( [ -f /etc/ssl/certs/ca-certificates.crt ] && echo /etc/ssl/certs/ca-certificates.crt || true)}"

log() { printf '%s  %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have_image() { podman image exists "$1"; }

# pull_or_standin IMAGE KIND: IMAGE if it is here or a registry serves it, else a stand-in
# made by mmdebstrap (KIND: python or redis); prints the image to use
pull_or_standin() {
  local image="$1" kind="$2" standin="localhost/dgn-standin-$2:bookworm"
  if have_image "$image" || timeout 60 podman pull -q "$image" >/dev/null 2>&1; then
    echo "$image"; return
  fi
  if ! have_image "$standin"; then
    log "no registry serves $image: making $standin from Debian packages (mmdebstrap)"
    local tar="$OUT/standin-$kind.tar"
    case "$kind" in
      python)
        # python3 of bookworm is 3.11, as in python:3.11-slim; pip and python on PATH from a venv
        mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
          --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
          --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
          bookworm "$tar" http://deb.debian.org/debian >&2
        podman import --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
          --change 'CMD ["python3"]' "$tar" "$standin" >/dev/null ;;
      redis)
        # redis-server and redis-cli on PATH and /data as the working folder, as in redis:7
        mmdebstrap --variant=minbase --include=redis-server,redis-tools \
          --customize-hook='mkdir -p "$1"/data' \
          --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
          bookworm "$tar" http://deb.debian.org/debian >&2
        podman import --change 'WORKDIR /data' --change 'CMD ["redis-server"]' "$tar" "$standin" >/dev/null ;;
    esac
    rm -f "$tar"
  fi
  echo "$standin"
}

# build_image BASE TAG: the project's own Dockerfile; TORCH_INDEX as in the environment
build_image() {
  local base="$1" tag="$2"
  local args=(--isolation chroot --layers --format docker -f "$ROOT/Dockerfile" -t "$tag"
              --build-arg "BASE_IMAGE=$base" --build-arg "TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
  if [ -n "$CA_BUNDLE" ]; then
    args+=(--build-arg "PIP_CERT=$CA_BUNDLE" --volume "$CA_BUNDLE:$CA_BUNDLE:ro")
  fi
  buildah bud "${args[@]}" "$ROOT" >&2
}

# wait_healthy CONTAINER SECONDS: run the image's HEALTHCHECK until it passes (podman has
# no timer for it here); prints the seconds it took
wait_healthy() {
  local name="$1" limit="$2" t0="$EPOCHREALTIME"
  until podman healthcheck run "$name" >/dev/null 2>&1; do
    if awk -v a="$EPOCHREALTIME" -v b="$t0" -v l="$limit" 'BEGIN { exit !(a - b > l) }'; then
      log "$name: not healthy after $limit s"; podman logs --tail 30 "$name" >&2 || true; return 1
    fi
    sleep 0.5
  done
  awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { printf "%.1f\n", a - b }'
}
