"""Log producers: how a file's producer is recognised from its first record, and how its lines become records.

Every reader streams the file line by line (gzip-compressed when the name ends in `.gz`) and yields
`(line number, record, raw line)`; a record is a dict of the producer's own field names, nested objects kept
nested (EVE) or flat dotted names as the producer writes them (Zeek, ulogd2). Fields are renamed to Sigma's
names by the producer's pySigma pipeline (`pipeline`), never here.

- Suricata EVE JSON (eve.json): one JSON object per line with `event_type`; time in `timestamp`
  (`2026-11-29T13:12:09.123456+0000`). The second netflow record of a flow (the reply's half) gets `hunt_reply`.
- Zeek JSON logs (`LogAscii::use_json=T`): objects with `ts` (epoch seconds, or ISO 8601 with
  `LogAscii::json_timestamps=JSON::TS_ISO8601`) and one of `uid`, `uids`, `fuid`, `id.orig_h`, `_path`. The
  log's name (`conn`, `dns`...) is the record's `_path` where json-streaming-logs writes one, else the file
  name's first part (`dns.log`, `dns.13:00:00-14:00:00.log.gz`); it becomes the `_path` column. Zeek's TSV logs
  are refused: turn JSON on.
- ulogd2 JSON (the JSON output plugin, Debian's ulogd2-json; one object per line): each key is the ulogd key's
  CIM name where it has one, otherwise its ulogd name, as ulogd_output_JSON.c writes them: `timestamp`
  (local time with offset, `2026-11-29T13:12:09.123456+0100`), `dvc`, `oob.prefix` (the LOG/NFLOG prefix),
  `oob.time.sec`, `oob.in`, `oob.out`, `ip.protocol` (a number: 6 tcp, 17 udp; for IPv6 BASE writes the
  upper-layer header there too, except for fragments), `src_ip`, `dest_ip` (IP2STR's CIM names), `src_port`,
  `dest_port` (the TCP/UDP ports' CIM names), `tcp.syn`, `ip.ttl`...
  A file is taken for ulogd2's when its first record has `oob.prefix` or `oob.time.sec`, or `dvc` beside
  `src_ip`. The stack must include IP2STR so that addresses are strings (ulogd's default JSON stacks do).
- Kernel LOG target lines (iptables `-j LOG`, nftables `log`), in syslog (`/var/log/kern.log`, rsyslog's
  RFC 3339 stamps) or `journalctl -k` text (short, short-iso, short-precise): the `KEY=value` words the kernel's
  nf_log_syslog writes after the prefix (`IN= OUT= MAC= SRC= DST= LEN= ... PROTO=TCP SPT= DPT= ... SYN`),
  each as a field of that name (a bare flag such as `SYN` or `DF` as `1`; the first of a repeated key, so
  `LEN` is the IP length). The prefix is the text between `kernel:` (and the `[uptime]` stamp) and `IN=`.
  Lines that are not netfilter LOG lines (other kernel messages) are skipped. A stamp without a year or zone
  (`Nov 29 13:12:09`) takes the file's modification year and is read as UTC; it only orders events for the
  correlation windows.
Both netfilter readers split a rulegen prefix (`rulegen:<sid>:<action> `) into `rulegen.sid` and
`rulegen.action`, so a hit names the rulegen rule that logged or dropped the packet.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from rulegen.errors import RulegenError

Record = dict[str, Any]


class LogInputError(RulegenError):
    """A log file is unreadable, of an unknown format, or has a malformed line: exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Producer:
    name: str  # suricata-eve, zeek, ulogd2-json, kernel-log
    label: str  # for people
    pipeline: str  # file in rulegen/data/pipelines
    timestamp: Callable[[Record], float | None]  # epoch seconds of a record
    nested: bool = False  # dotted field names are paths into nested objects (EVE), not keys (Zeek, ulogd2)


def open_lines(path: Path) -> Iterator[bytes]:
    """The file's lines as bytes, decompressing `.gz`."""
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as handle:
            yield from handle
    except (OSError, EOFError) as exc:
        raise LogInputError(f"{path}: cannot read the file: {exc}") from None


@lru_cache(maxsize=4096)
def _iso_seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def iso_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 stamp with an offset (`+0000`, `+00:00`, `Z`); the second is cached."""
    if not isinstance(value, str) or len(value) < 19:
        return None
    head, rest = value[:19], value[19:]
    fraction, zone = 0.0, rest
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("0123456789"))
        fraction, zone = float(rest[:digits] or 0), rest[digits:]
    if zone in ("Z", "z"):
        zone = "+00:00"
    elif len(zone) == 5:  # +HHMM
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        return _iso_seconds(head + zone) + fraction
    except ValueError:
        return None


def _eve_time(record: Record) -> float | None:
    return iso_time(record.get("timestamp"))


def _zeek_time(record: Record) -> float | None:
    ts = record.get("ts")
    return float(ts) if isinstance(ts, int | float) else iso_time(ts)


EVE = Producer("suricata-eve", "Suricata EVE JSON", "hunt_suricata_eve.yml", _eve_time, nested=True)
ZEEK = Producer("zeek", "Zeek JSON", "hunt_zeek.yml", _zeek_time)
ULOGD2 = Producer("ulogd2-json", "ulogd2 JSON", "hunt_ulogd2_json.yml", _eve_time)
KERNEL = Producer("kernel-log", "kernel LOG lines", "hunt_kernel_log.yml", lambda r: r.get("_time"))
PRODUCERS = (EVE, ZEEK, ULOGD2, KERNEL)

KERNEL_SNIFF_LINES = 1000
ZEEK_KEYS = ("uid", "uids", "fuid", "id.orig_h", "_path")  # beside `ts`, one of these marks a Zeek record
RULEGEN_PREFIX = re.compile(r"rulegen:(\d+):([a-z]+)")


def _json_producer(record: Record) -> Producer | None:
    if "event_type" in record:
        return EVE
    if "ts" in record and any(k in record for k in ZEEK_KEYS):
        return ZEEK
    if "oob.prefix" in record or "oob.time.sec" in record or ("dvc" in record and "src_ip" in record):
        return ULOGD2
    return None


def detect(path: Path) -> Producer:
    """The producer of a file, from its first non-empty line."""
    for number, line in enumerate(open_lines(path), 1):
        text = line.strip()
        if not text:
            continue
        if text.startswith(b"#separator") or text.startswith(b"#fields"):
            raise LogInputError(f"{path}:{number}: a Zeek TSV log; hunt reads Zeek's JSON logs "
                                "(LogAscii::use_json=T)")
        if text.startswith(b"{"):
            try:
                record = orjson.loads(text)
            except ValueError as exc:
                raise LogInputError(f"{path}:{number}: not a JSON object: {exc}") from None
            producer = _json_producer(record) if isinstance(record, dict) else None
            if producer is None:
                raise LogInputError(f"{path}:{number}: JSON of an unknown producer (neither Suricata EVE "
                                    "nor Zeek nor ulogd2 JSON)")
            return producer
        break
    else:
        raise LogInputError(f"{path}: empty log file")
    # text: a kernel log holds other messages too; it is one when a netfilter LOG line comes early
    for number, line in enumerate(open_lines(path), 1):
        if KERNEL_LINE.match(line.decode("utf-8", "replace").rstrip("\r\n")):
            return KERNEL
        if number >= KERNEL_SNIFF_LINES:
            break
    raise LogInputError(f"{path}:1: unknown log format (not JSON, and no kernel LOG line in the first "
                        f"{KERNEL_SNIFF_LINES} lines)")


def zeek_path(path: Path) -> str:
    """conn.log, conn.2026-11-29-13-00-00.log.gz -> conn."""
    return path.name.split(".", 1)[0]


NETFLOW_MEMORY = 65536  # flow ids of recent netflow records: the two halves of a flow are written together
REPLY = "hunt_reply"


def read_json(path: Path, producer: Producer) -> Iterator[tuple[int, Record, bytes]]:
    """JSON lines. EVE netflow records come in pairs per flow, the to-server half first, each half with its own
    sender as src_ip; the second half of a flow id gets `hunt_reply: true`, so that a reply is not read as a
    connection its sender opened (the firewall log source records connections in the opener's direction)."""
    default_path = zeek_path(path) if producer is ZEEK else None
    netflows: dict[Any, None] = {}
    for number, line in enumerate(open_lines(path), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except ValueError as exc:
            raise LogInputError(f"{path}:{number}: not a JSON object: {exc}") from None
        if not isinstance(record, dict):
            raise LogInputError(f"{path}:{number}: not a JSON object")
        if default_path is not None and "_path" not in record:
            record["_path"] = default_path
        elif producer is ULOGD2:
            _rulegen_prefix(record, record.get("oob.prefix"))
        elif record.get("event_type") == "netflow":
            flow_id = record.get("flow_id")
            if flow_id in netflows:
                record[REPLY] = True
            else:
                netflows[flow_id] = None
                if len(netflows) > NETFLOW_MEMORY:
                    del netflows[next(iter(netflows))]
        yield number, record, line


def _rulegen_prefix(record: Record, prefix: Any) -> None:
    found = RULEGEN_PREFIX.match(prefix.strip()) if isinstance(prefix, str) else None
    if found:
        record["rulegen.sid"] = int(found.group(1))
        record["rulegen.action"] = found.group(2)


# syslog / journalctl stamp, host, `kernel:`, optional [uptime], then prefix up to IN=
KERNEL_LINE = re.compile(
    r"^(?P<stamp>\d{4}-\d\d-\d\dT\S+|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?)\s+\S+\s+kernel:\s*"
    r"(?:\[\s*\d+\.\d+\]\s*)?(?P<prefix>.*?)(?P<body>IN=\S*\s+OUT=.*)$")


def _kernel_time(stamp: str, year: int) -> float | None:
    if stamp[:4].isdigit():
        return iso_time(stamp)
    try:
        return datetime.strptime(f"{year} {stamp.split('.')[0]}", "%Y %b %d %H:%M:%S").replace(
            tzinfo=UTC).timestamp()
    except ValueError:
        return None


def parse_kernel_line(text: str, year: int) -> Record | None:
    """A kernel LOG line as a record (None for any other line)."""
    found = KERNEL_LINE.match(text)
    if not found:
        return None
    record: Record = {"prefix": found.group("prefix").strip(), "_time": _kernel_time(found.group("stamp"), year),
                      "timestamp": found.group("stamp")}
    for word in found.group("body").split():
        key, sep, value = word.partition("=")
        if key in record:
            continue
        if not sep:
            record[key] = 1
        elif value.isdigit() and key in ("SPT", "DPT", "LEN", "TTL", "ID", "WINDOW", "URGP", "TYPE", "CODE"):
            record[key] = int(value)
        else:
            record[key] = value
    _rulegen_prefix(record, record["prefix"])
    return record


def read_kernel(path: Path) -> Iterator[tuple[int, Record, bytes]]:
    try:
        year = datetime.fromtimestamp(path.stat().st_mtime, UTC).year
    except OSError as exc:
        raise LogInputError(f"{path}: cannot read the file: {exc}") from None
    for number, line in enumerate(open_lines(path), 1):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if "IN=" not in text:
            continue
        record = parse_kernel_line(text, year)
        if record is not None:
            yield number, record, line


def read(path: Path, producer: Producer) -> Iterator[tuple[int, Record, bytes]]:
    return read_kernel(path) if producer is KERNEL else read_json(path, producer)
