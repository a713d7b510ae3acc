"""What every validator returns: findings pinned to a file line, and which engine judged each file.

A finding is one of three kinds:
- `engine`: an engine refuses the file or the line (a syntax error, an engine that fails, is killed or times
  out): the file fails;
- `lint`: a linter's suggestion (suricata-check, pySigma's and SigmaHQ's validators, a classtype the engine
  only warns about), with the linter's code: reported grouped by code, a failure only under `--strict` (and
  always in rulegen's own build);
- `note`: information that judges nothing (an ATT&CK tag newer than the shipped ATT&CK data, a rule the
  linter's own parser cannot read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("engine", "lint", "note")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int  # 1-based; 0 when the finding concerns the whole file
    engine: str  # who found it: "suricata 7.0.10", "built-in", "pysigma 1.5.1", "suricata-check 0.9.3b0", ...
    message: str
    severity: str = "error"  # error | warning | info: the engine's or linter's own grade
    sid: int | None = None
    entry: str | None = None  # the knowledge entry that produced the line, when known
    kind: str = "engine"  # engine | lint | note (see the module docstring)
    code: str | None = None  # the linter's code (S406, sigmahq_logsource_unknown, ...): lint and notes group by it

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: [{self.engine}] {self.message}"
        return f"{text} (entry: {self.entry})" if self.entry else text


@dataclass
class FileReport:
    path: str
    format: str  # suricata | sigma | iptables | ip6tables | nftables
    checked_by: list[str] = field(default_factory=list)  # e.g. ["suricata 7.0.10"], ["built-in (suricata not found)"]
    findings: list[Finding] = field(default_factory=list)
