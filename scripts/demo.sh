#!/usr/bin/env bash
# Main job: set up (if needed), then run the full pipeline on the simulated cell and write a report in runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  # sim entry point: DDS never leaves this machine
exec .venv/bin/dexstack-sim-demo "$@"
