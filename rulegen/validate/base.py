"""What every validator returns: findings pinned to a file line, and which engine judged each file."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    path: str
    line: int  # 1-based; 0 when the finding concerns the whole file
    engine: str  # who found it: "suricata 7.0.10", "built-in", "pysigma 1.5.1", "suricata-check 0.9.3b0", ...
    message: str
    severity: str = "error"  # error | warning
    sid: int | None = None
    entry: str | None = None  # the knowledge entry that produced the line, when known

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: [{self.engine}] {self.message}"
        return f"{text} (entry: {self.entry})" if self.entry else text


@dataclass
class FileReport:
    path: str
    format: str  # suricata | sigma | iptables | ip6tables | nftables
    checked_by: list[str] = field(default_factory=list)  # e.g. ["suricata 7.0.10"], ["built-in (suricata not found)"]
    findings: list[Finding] = field(default_factory=list)
