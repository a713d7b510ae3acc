#!/usr/bin/env bash
# Install the engines rulegen validates against, on Debian bookworm (run as root):
# Suricata 7 and suricata-update from bookworm-backports, iptables, nftables, ipset, iproute2,
# ulogd2 with its JSON output (the NFLOG firewall log proofs run it inside their own namespaces),
# and headless Chromium (the REPORT.html test looks at the report in a real browser).
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "install-engines.sh: run as root (apt-get)" >&2
  exit 2
fi
src=/etc/apt/sources.list.d/bookworm-backports.sources
if [ ! -f "$src" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  cat >"$src" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q iptables nftables ipset iproute2 ulogd2 ulogd2-json chromium
apt-get install -y -q -t bookworm-backports suricata suricata-update
suricata -V
/usr/sbin/ulogd -V
