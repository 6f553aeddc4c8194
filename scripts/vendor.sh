#!/usr/bin/env bash
# Vendors the dashboard's chart library from the npm registry into
# dashboard/static/vendor/, so the page works offline (no CDN). Run it to
# move to another version; the vendored file is committed. Needs no node:
# the package's tarball is fetched and checked against the registry's
# sha512 integrity.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-4.6.2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$version" "$tmp" <<'PY'
import base64, hashlib, json, sys, tarfile, urllib.request
version, tmp = sys.argv[1], sys.argv[2]
meta = json.load(urllib.request.urlopen(f"https://registry.npmjs.org/chart.js/{version}"))
data = urllib.request.urlopen(meta["dist"]["tarball"]).read()
algo, want = meta["dist"]["integrity"].split("-", 1)
assert algo == "sha512" and base64.b64encode(hashlib.sha512(data).digest()).decode() == want, \
    "the tarball does not match the registry's integrity"
open(f"{tmp}/chart.tgz", "wb").write(data)
tarfile.open(f"{tmp}/chart.tgz").extractall(tmp, filter="data")
PY
cp "$tmp/package/dist/chart.umd.min.js" dashboard/static/vendor/chart.umd.min.js
cp "$tmp/package/LICENSE.md" dashboard/static/vendor/chart.js-LICENSE.md
echo "vendored chart.js $version into dashboard/static/vendor/"
