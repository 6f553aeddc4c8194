#!/usr/bin/env bash
# The live dashboard, Prometheus /metrics and Grafana (Infinity) JSON
# endpoints, for one Redis server or any node of a cluster:
#
#   scripts/dashboard.sh --redis redis://HOST:PORT --port 8090
#
# Without --redis: the server `scripts/demo.sh --keep` left running.
# Installs its Python packages into target/dashenv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$(scripts/dashenv.sh)
exec "$py" dashboard/service.py "$@"
