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
# benchmarks/bench.py keeps its logs there.
export CHECKTCP_CACHE="$XDG_CACHE_HOME/checktcp"
# The collection is used in place, through a link inside the clone's cache.
export ANSIBLE_COLLECTIONS_PATH="$XDG_CACHE_HOME/collections"
VENV="$CHECKTCP_ROOT/.venv"

# A recipe's hash, for an image tag: its script without the line that prints
# its --help (marked), which changes no image.
recipe_hash() {
  grep -v -- '# --help: not part of the recipe' "$1" | sha256sum | cut -c1-8
}

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
    "$(recipe_hash "$CHECKTCP_ROOT/scripts/build-image")"
}
# That image with HAProxy installed, for the loopback Lua tests of HAProxy
# versions the host does not have (scripts/build-haproxy-image).
haproxy_image_ref() {
  local base
  base=$(image_ref "$1") || return
  printf 'localhost/checktcp-haproxy:%s-%s\n' "${base##*:}" \
    "$(recipe_hash "$CHECKTCP_ROOT/scripts/build-haproxy-image")"
}
CHECKTCP_IMAGE_12=$(image_ref 12)
CHECKTCP_IMAGE_13=$(image_ref 13)
CHECKTCP_IMAGE_FORKY=$(image_ref forky)
export CHECKTCP_IMAGE_12 CHECKTCP_IMAGE_13 CHECKTCP_IMAGE_FORKY

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# System packages: podman runs the systemd containers (with runc), debootstrap
# builds their image, curl shows the page: all the demo needs. The tests add
# haproxy for the loopback Lua tests (faketime steps its clock), Chromium with
# a font for the page's layout (tests/lua/test_page_layout.py), wrk and gcc
# for the benchmarks, shellcheck for ansible-test sanity, and Lua with luacheck.
DEMO_PACKAGES=(podman runc debootstrap curl python3-venv)
# The real servers of the conversation tests (tests/real_servers.py) run as
# their own instances on free loopback ports: Debian's units are disabled after
# the install so that none holds a default port.
REAL_SERVER_PACKAGES=(redis-server memcached openssh-server exim4-daemon-light openssl)
REAL_SERVER_UNITS=(redis-server memcached ssh exim4)
# The quick tier's (scripts/test quick): luacheck, the Lua interpreters of the
# filter's and the fake HAProxy's tests, HAProxy and the real servers of the module's tests.
QUICK_PACKAGES=(lua-check lua5.3 lua5.4 haproxy python3-venv "${REAL_SERVER_PACKAGES[@]}")
# Every test's: the quick tier's and the demo's, and more.
TEST_PACKAGES=("${DEMO_PACKAGES[@]}" "${QUICK_PACKAGES[@]}" faketime git wrk shellcheck gcc libc6-dev
  chromium fonts-dejavu-core)

# Installs the packages given (default: TEST_PACKAGES) that are missing.
# Returns non-zero, never exits: env.sh sources this into the user's shell.
ensure_system_packages() {
  local wanted=("$@") missing=() pkg
  [[ ${#wanted[@]} -gt 0 ]] || wanted=("${TEST_PACKAGES[@]}")
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    printf 'error: run as root, or install: %s\n' "${missing[*]}" >&2
    return 1
  fi
  log "installing system packages: ${missing[*]}"
  apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || return 1
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now "${REAL_SERVER_UNITS[@]}" >/dev/null 2>&1 || true
  fi
}

# The pinned tools in .venv, reinstalled only when requirements change. The
# stamp is written only after every install succeeded: a failed install
# fails here and again on the next run, never leaves a half-built .venv in use.
ensure_venv() {
  local stamp="$VENV/.requirements.sha256" sum
  sum=$(sha256sum "$CHECKTCP_ROOT/requirements/test.txt" | cut -d' ' -f1) || return 1
  if [[ ! -x "$VENV/bin/python" || ! -f "$stamp" || $(cat "$stamp") != "$sum" ]]; then
    log "installing the pinned tools into .venv"
    rm -f "$stamp"
    if ! { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --upgrade pip \
      && "$VENV/bin/pip" install -q -r "$CHECKTCP_ROOT/requirements/test.txt"; }; then
      printf 'error: installing requirements/test.txt into %s failed\n' "$VENV" >&2
      return 1
    fi
    echo "$sum" >"$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

link_collection() {
  local dir="$XDG_CACHE_HOME/collections/ansible_collections/checktcp"
  mkdir -p "$dir" && ln -sfn "$CHECKTCP_ROOT" "$dir/haproxy_lua"
}

# Returns non-zero when any part fails (callers stop: `setup_all || exit 1`).
setup_all() {
  ensure_system_packages && ensure_venv && link_collection
}

# The demo's own venv, smaller than the test tools: ansible-core alone
# (requirements/demo.txt), and beside it the containers.podman collection for
# the podman connection, taken from the wheel of the `ansible` package that
# requirements/test.txt pins (Galaxy is out of reach), without installing it.
DEMO_VENV="$XDG_CACHE_HOME/demo"
ensure_demo_venv() {
  local stamp="$DEMO_VENV/.requirements.sha256" sum pin wheels
  pin=$(grep -x 'ansible==[0-9.]*' "$CHECKTCP_ROOT/requirements/test.txt") \
    || { printf 'error: no ansible==X pin in requirements/test.txt\n' >&2; return 1; }
  sum=$({ cat "$CHECKTCP_ROOT/requirements/demo.txt"; echo "$pin"; } | sha256sum | cut -d' ' -f1) || return 1
  if [[ ! -x "$DEMO_VENV/bin/ansible-playbook" || ! -f "$stamp" || $(cat "$stamp") != "$sum" ]]; then
    log "installing ansible-core (requirements/demo.txt) and containers.podman ($pin) into $DEMO_VENV"
    rm -rf "$DEMO_VENV"
    wheels=$(mktemp -d "${TMPDIR:-/tmp}/$CHECKTCP_ID-demo-wheel.XXXXXX") || return 1
    if ! { python3 -m venv "$DEMO_VENV" \
      && "$DEMO_VENV/bin/pip" install -q --no-cache-dir -r "$CHECKTCP_ROOT/requirements/demo.txt" \
      && "$DEMO_VENV/bin/pip" download -q --no-cache-dir --no-deps -d "$wheels" "$pin" \
      && "$DEMO_VENV/bin/python" - "$wheels"/ansible-*.whl "$DEMO_VENV/collections" <<'PY'
import sys, zipfile
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    wheel.extractall(sys.argv[2], [name for name in wheel.namelist() if name.startswith(prefix)])
PY
    }; then
      printf 'error: installing the demo tools into %s failed\n' "$DEMO_VENV" >&2
      rm -rf "$wheels"
      return 1
    fi
    rm -rf "$wheels"
    echo "$sum" >"$stamp"
  fi
  export PATH="$DEMO_VENV/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$XDG_CACHE_HOME/collections:$DEMO_VENV/collections"
}

# What the demo and `source scripts/env.sh` need: podman, the demo venv, the
# collection linked where Ansible finds it.
setup_demo() {
  ensure_system_packages "${DEMO_PACKAGES[@]}" && ensure_demo_venv && link_collection
}

# The quick tier's: no container, no root once done.
setup_quick() {
  ensure_system_packages "${QUICK_PACKAGES[@]}" && ensure_venv && link_collection
}

# --help or -h as the first argument (ARGS after the script's path): print the
# script's opening comment, which is its usage, and exit 0.
help_if_asked() {
  local script=$1
  shift
  [[ ${1:-} == -h || ${1:-} == --help ]] || return 0
  sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$script"
  exit 0
}

# The control-node matrix: ansible-core minors from requirements/control-nodes.txt.
CHECKTCP_CORES=$(sed -n 's/^ansible-core==\([0-9]*\.[0-9]*\)\..*/\1/p' \
  "$CHECKTCP_ROOT/requirements/control-nodes.txt" | xargs)
export CHECKTCP_CORES

# A venv holding only ansible-core 2.X (its pin), under the clone's cache;
# prints its path. Reinstalled when the pin changes; stamped only on success.
ensure_core_venv() {
  local minor=$1 pin venv stamp
  pin=$(grep -x "ansible-core==${minor//./\\.}\.[0-9]*" "$CHECKTCP_ROOT/requirements/control-nodes.txt") \
    || { printf 'error: no ansible-core %s in requirements/control-nodes.txt\n' "$minor" >&2; return 1; }
  venv="$XDG_CACHE_HOME/ansible-core-$minor"
  stamp="$venv/.pin"
  if [[ ! -x "$venv/bin/ansible-playbook" || ! -f "$stamp" || $(cat "$stamp") != "$pin" ]]; then
    log "installing $pin into $venv"
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "$pin"; } >&2; then
      printf 'error: installing %s into %s failed\n' "$pin" "$venv" >&2
      return 1
    fi
    echo "$pin" >"$stamp"
  fi
  echo "$venv"
}

# ansible-test sanity (empty ignore files) with the repo's ansible-test, or
# the one given; fails too when a test was skipped for want of a tool (a
# missing shellcheck is only a warning to ansible-test).
sanity() {
  local out rc
  out=$(mktemp "${TMPDIR:-/tmp}/$CHECKTCP_ID-sanity.XXXXXX")
  CHECKTCP_ANSIBLE_TEST=${1:-} "$CHECKTCP_ROOT/scripts/ansible-test" sanity --venv --python 3.11 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  if grep -E 'Required program ".*" not found' "$out" >&2; then
    printf 'error: ansible-test skipped a sanity test for want of a program\n' >&2
    rc=1
  fi
  rm -f "$out"
  return "$rc"
}

# Waits up to 10 s for the status page inside container NAME to answer CODE
# with WORD (OK or KO) in its title.
expect_page() {
  local name=$1 code=$2 word=$3 answer deadline=$((SECONDS + 10))
  while :; do
    answer=$(podman exec "$name" curl -s --max-time 5 -w ' %{http_code}' http://127.0.0.1/)
    if [[ $answer == *"<h1>$word</h1>"*" $code" ]]; then
      log "status page: $code $word"
      return 0
    fi
    if [[ $SECONDS -ge $deadline ]]; then
      printf 'error: expected %s %s from %s, got: %s\n' "$code" "$word" "$name" "$answer" >&2
      return 1
    fi
    sleep 0.2
  done
}
