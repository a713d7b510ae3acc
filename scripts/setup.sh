#!/usr/bin/env bash
# Create .venv and install rulegen into it (non-editable). `setup.sh test` adds the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import venv, ensurepip" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q python3-venv; else sudo apt-get install -y -q python3-venv; fi
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --upgrade pip
if [ "${1:-}" = "test" ]; then
  .venv/bin/pip install -q -e ".[test]"
else
  .venv/bin/pip install -q .
fi
