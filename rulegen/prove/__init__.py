"""Proofs that generated rules fire on the traffic or logs they describe, and stay quiet on normal traffic.

One module per target (`suricata`, `sigma`, `firewall`); each exposes
`prove(kb, out_dir, work_dir) -> list[Proof]`: per (pattern, target) one Proof that the rule fires
(`side="fires"`) and one that it stays quiet on the traffic it resembles (`side="quiet"`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Proof:
    pattern: str  # pattern id, or a pseudo id such as "normal-traffic" for the quiet check
    target: str  # suricata | sigma | iptables | nftables
    proven: bool
    detail: str  # what was shown, or why not (e.g. "sid 1000013 alerted 1x on ftp-anonymous-login.pcap")
    skipped: str | None = None  # why the proof could not run here (engine missing, not root), else None
    side: str = "fires"  # fires: the rule acts on its traffic; quiet: it stays quiet on look-alike traffic
