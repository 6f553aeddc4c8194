# Detection of what a build or test run needs, as functions of a root
# directory, so scripts/check-fresh.sh can run them against fake roots.
# Sourced by scripts/install-deps.sh; prints nothing, changes nothing.

# True when bindgen (clang-sys) would find a libclang under ROOT: the file
# names and directories it searches (clang-sys build/dynamic.rs and
# build/common.rs), with a digit after "libclang-" so that LLVM's C++
# library, libclang-cpp.so.N (shipped alone by fresh Debian images), does not
# count. LIBCLANG_PATH, when set, is searched too.
libclang_present() {
  local root=${1:-/} dir name
  local dirs=("$root"/usr/local/llvm*/lib* "$root"/usr/local/lib*/*/* "$root"/usr/local/lib*/*
              "$root"/usr/local/lib* "$root"/usr/lib*/*/* "$root"/usr/lib*/* "$root"/usr/lib*)
  [ -n "${LIBCLANG_PATH:-}" ] && [ "$root" = / ] && dirs+=("$LIBCLANG_PATH")
  for dir in "${dirs[@]}"; do
    [ -d "$dir" ] || continue
    for name in "$dir"/libclang.so "$dir"/libclang.so.[0-9]* "$dir"/libclang-[0-9]*.so "$dir"/libclang-[0-9]*.so.[0-9]*; do
      [ -e "$name" ] && return 0
    done
  done
  return 1
}

# True when command NAME is installed under ROOT (on the host: on PATH).
command_present() {
  local root=$1 name=$2
  if [ "$root" = / ]; then
    command -v "$name" >/dev/null 2>&1
  else
    [ -x "$root/usr/bin/$name" ] || [ -x "$root/usr/local/bin/$name" ]
  fi
}

# Prints the Debian packages missing under ROOT, one per line.
missing_packages() {
  local root=${1:-/}
  command_present "$root" redis-server || echo redis-server
  { command_present "$root" redis-cli && command_present "$root" redis-benchmark; } || echo redis-tools
  libclang_present "$root" || echo libclang-dev
  # The dashboard's tests: a real browser, and Prometheus with promtool.
  command_present "$root" chromium || echo chromium
  { command_present "$root" prometheus && command_present "$root" promtool; } || echo prometheus
  return 0
}
