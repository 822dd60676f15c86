#!/usr/bin/env bash
# Test command: set up (if needed), then run the whole test suite (unit + real-ROS integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST  # tests: DDS never leaves this machine (conftest.py sets it too)
# Two pytest processes: librealsense (the camera core tests) and Fast DDS in one process corrupt the heap at exit
# (pyrealsense2 2.59 + the Kilted wheels), so the camera core tests run on their own. Tests that need a recording
# beside ROS make it in a subprocess (tests/camera/make_recording.py).
pytest=(.venv/bin/python -m pytest -q --timeout 600 -p no:cacheprovider)
if [ $# -gt 0 ]; then exec "${pytest[@]}" "$@"; fi
echo "[test] ruff check ."
.venv/bin/ruff check .  # lint first (ruff.toml); also a pre-commit hook (.pre-commit-config.yaml)
"${pytest[@]}" tests/camera
exec "${pytest[@]}" tests --ignore=tests/camera
