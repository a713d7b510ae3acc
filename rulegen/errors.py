"""Error classes that carry the source location, so the CLI can print `file:line: entry: message`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    entry: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.entry}: {self.message}" if self.entry else f"{where}: {self.message}"


class RulegenError(Exception):
    """Base class of the errors rulegen reports to the user (never as a traceback)."""

    exit_code = 1


class KnowledgeError(RulegenError):
    """The knowledge base (or the lock file beside it) is invalid: exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class LockChangedError(RulegenError):
    """`--frozen` was given and the build would change the lock file."""

    exit_code = 1
