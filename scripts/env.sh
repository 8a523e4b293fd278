#!/usr/bin/env bash
# From a clone, the one command before running the playbook by hand:
#
#   source scripts/env.sh
#   ansible-playbook site.yml -e haproxy_checktcp_timeout_ms=500
#
# Puts the demo's ansible-core (.cache/demo, installed on first use from
# requirements/demo.txt) on PATH, links the collection where Ansible finds it,
# and exports CHECKTCP_ID, so that inventory/demo.yml (ansible.cfg's default)
# reaches the container `scripts/demo` started. Sourcing it again is harmless;
# it changes nothing in the shell but environment variables.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"
    exit 0
  fi
  printf 'scripts/env.sh sets up your shell: run "source %s", not "%s"\n' "$0" "$0" >&2
  exit 2
fi
# The user's own cache folder stays theirs (lib.sh points it into the clone for the tests).
__checktcp_xdg_cache=${XDG_CACHE_HOME-}
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" && setup_demo
if [[ -n $__checktcp_xdg_cache ]]; then export XDG_CACHE_HOME=$__checktcp_xdg_cache; else unset XDG_CACHE_HOME; fi
unset __checktcp_xdg_cache
