#!/usr/bin/env bash
# The demo: a simulated fleet from config/stations.yaml plus the daemon on its embedded
# defaults (no external server), with a live view of the fleet in the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec .venv/bin/stationd demo --config config/stations.yaml "$@"
