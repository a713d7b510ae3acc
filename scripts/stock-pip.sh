#!/usr/bin/env bash
# Install this checkout as a user would: a fresh venv with the pip that `python3 -m venv` gives (not
# upgraded), `pip install .`, then `rulegen --version`. Fails when the dependency pins need a newer pip.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import venv, ensurepip" 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -q && apt-get install -y -q python3-venv; else sudo apt-get install -y -q python3-venv; fi
fi
venv=$(mktemp -d "${TMPDIR:-/tmp}/rulegen-stock-pip.XXXXXX")
trap 'rm -rf "$venv"' EXIT
"$python" -m venv "$venv"
echo "stock pip: $("$venv/bin/pip" --version)"
"$venv/bin/pip" install -q . || { echo "stock pip: pip install . failed" >&2; exit 1; }
"$venv/bin/rulegen" --version || { echo "stock pip: rulegen --version failed" >&2; exit 1; }
