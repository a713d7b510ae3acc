"""How a pattern's severity reads in every output: one table, so that Suricata's `priority`, ET's
`signature_severity` metadata and Sigma's `level` always say the same thing.

Suricata's `priority` is written on every rule and overrides the default priority of the rule's classtype: the
classtype says what kind of event it is, the knowledge's severity says how loud it should be (an
`attempted-recon` probe of a dead port is priority 3 or 4, not the classtype's 2). ET's four
signature_severity values take five levels: medium and high both read `Major`.

The SIEM bundles suppress repeats of an alert per source for `suppress_seconds`: the louder the alert, the sooner the
same source may raise it again (a critical one after 5 minutes, an informational one once a day)."""

from __future__ import annotations

from dataclasses import dataclass

from rulegen.model import Severity


@dataclass(frozen=True)
class SeverityReading:
    suricata_priority: int  # 1 highest .. 4 lowest, as in classification.config
    signature_severity: str  # ET Open metadata: Informational, Minor, Major, Critical
    sigma_level: str  # Sigma: informational, low, medium, high, critical
    suppress_seconds: int  # SIEM: repeats from the same source raise no new alert within this period


SEVERITY = {
    Severity.INFORMATIONAL: SeverityReading(4, "Informational", "informational", 24 * 3600),
    Severity.LOW: SeverityReading(3, "Minor", "low", 12 * 3600),
    Severity.MEDIUM: SeverityReading(2, "Major", "medium", 3600),
    Severity.HIGH: SeverityReading(1, "Major", "high", 15 * 60),
    Severity.CRITICAL: SeverityReading(1, "Critical", "critical", 5 * 60),
}

# The same readings by Sigma level: what a SIEM bundle reads from a converted rule (a site's own rule included).
BY_SIGMA_LEVEL = {reading.sigma_level: reading for reading in SEVERITY.values()}
