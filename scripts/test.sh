#!/usr/bin/env bash
# Test command: set up (if needed), then run the whole test suite (unit + real-ROS integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  # tests: DDS never leaves this machine (conftest.py sets it too)
exec .venv/bin/python -m pytest -q --timeout 600 -p no:cacheprovider "$@"
