# Shared by scripts/test, scripts/demo and the benchmarks: install what the
# test bed needs on a fresh Debian machine, once, and set up the environment.
# shellcheck shell=bash

CHECKTCP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CHECKTCP_ROOT
export CONTAINERS_CONF="$CHECKTCP_ROOT/tests/podman/containers.conf"
export ANSIBLE_CONFIG="$CHECKTCP_ROOT/ansible.cfg"
export ANSIBLE_FORCE_COLOR=${ANSIBLE_FORCE_COLOR:-0}
# Everything a test creates outside the clone (containers, networks, temp
# directories) is named after CHECKTCP_ID, derived from the clone's path, so
# two clones can test side by side. Caches (molecule's state, the collection
# link) stay inside the clone.
CHECKTCP_ID=${CHECKTCP_ID:-checktcp-$(printf '%s' "$CHECKTCP_ROOT" | sha256sum | cut -c1-8)}
export CHECKTCP_ID
export XDG_CACHE_HOME="$CHECKTCP_ROOT/.cache"
# The collection is used in place, through a link inside the clone's cache.
export ANSIBLE_COLLECTIONS_PATH="$XDG_CACHE_HOME/collections"
VENV="$CHECKTCP_ROOT/.venv"

# The one place that knows the test images' tags: Debian version plus a hash
# of the recipe (scripts/build-image), so a changed recipe rebuilds the image.
image_ref() {
  local version
  case ${1:-} in
    12 | bookworm) version=12 ;;
    13 | trixie) version=13 ;;
    forky) version=forky ;;
    *) echo "image_ref: unknown image '${1:-}' (12|bookworm, 13|trixie or forky)" >&2; return 2 ;;
  esac
  printf 'localhost/checktcp-debian:%s-%s\n' "$version" \
    "$(sha256sum "$CHECKTCP_ROOT/scripts/build-image" | cut -c1-8)"
}
CHECKTCP_IMAGE_12=$(image_ref 12)
CHECKTCP_IMAGE_13=$(image_ref 13)
CHECKTCP_IMAGE_FORKY=$(image_ref forky)
export CHECKTCP_IMAGE_12 CHECKTCP_IMAGE_13 CHECKTCP_IMAGE_FORKY

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# System packages: podman runs the systemd containers (with runc), debootstrap
# builds their image, haproxy runs the loopback Lua tests, wrk the benchmarks.
ensure_system_packages() {
  local wanted=(podman runc debootstrap haproxy curl git python3-venv wrk) missing=() pkg
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "run as root, or install: ${missing[*]}"
  log "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The pinned tools in .venv, reinstalled only when requirements change.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256" sum
  sum=$(sha256sum "$CHECKTCP_ROOT/requirements/test.txt" | cut -d' ' -f1)
  if [[ -x "$VENV/bin/python" && -f "$stamp" && $(cat "$stamp") == "$sum" ]]; then
    :
  else
    log "installing the pinned tools into .venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -r "$CHECKTCP_ROOT/requirements/test.txt"
    echo "$sum" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

link_collection() {
  local dir="$ANSIBLE_COLLECTIONS_PATH/ansible_collections/checktcp"
  mkdir -p "$dir"
  ln -sfn "$CHECKTCP_ROOT" "$dir/haproxy_lua"
}

setup_all() {
  ensure_system_packages
  ensure_venv
  link_collection
}
