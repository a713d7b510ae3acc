#!/usr/bin/env bash
# Install the engines (Suricata 7, iptables, nftables), the Python packages, then run lint and tests.
# Needs root (apt-get, network namespaces). CI runs it with RULEGEN_REQUIRE_ENGINES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then bash scripts/install-engines.sh; else sudo bash scripts/install-engines.sh; fi
bash scripts/setup.sh test
.venv/bin/ruff check rulegen tests
export RULEGEN_REQUIRE_ENGINES=${RULEGEN_REQUIRE_ENGINES:-1}
if [ "$(id -u)" -eq 0 ]; then
  exec .venv/bin/python -m pytest "$@"
else
  exec sudo --preserve-env=RULEGEN_REQUIRE_ENGINES .venv/bin/python -m pytest "$@"
fi
