"""Which knowledge a command reads: `-k` values, else RULEGEN_KNOWLEDGE, else rulegen.toml in the working
directory, else both shipped packs. `@shipped` names every pack that comes with rulegen, `@<pack>` one of them
(`@article`, `@current`); any other value is a folder or file, and later ones layer on earlier ones.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rulegen.errors import KnowledgeError, Problem, RulegenError
from rulegen.knowledge import (
    COMMON_FILE,
    default_knowledge_dir,
    is_pack,
    is_pack_tree,
    pack_folders,
    shipped_packs,
)

SHIPPED = "@shipped"
ENV = "RULEGEN_KNOWLEDGE"
CONFIG = "rulegen.toml"
CONFIG_KEYS = ("knowledge",)
BUILT_IN = (SHIPPED,)


class SelectionError(RulegenError):
    """An unknown @pack (exit 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Selection:
    """The knowledge values in order and where they were set (for the messages that say what was searched)."""

    values: tuple[str, ...]
    source: str  # "-k", "RULEGEN_KNOWLEDGE", the rulegen.toml's path or "the built-in default"

    def describe(self) -> str:
        return f"{' '.join(self.values)} (from {self.source})"


def hint(selection: Selection, packs: Sequence[str]) -> str:
    """What was searched (the selection and the packs it gave) and how to search elsewhere, for the "nothing
    found" messages."""
    return (f"searched the knowledge {selection.describe()}, packs {', '.join(packs) or 'none'}; choose other "
            f"knowledge with -k DIR or -k @pack (repeatable), or set a default in {ENV} or in {CONFIG} "
            f"(knowledge = [\"{SHIPPED}\", \"site/\"])")


def choose(cli_values: Sequence[str], cwd: Path | None = None) -> Selection:
    """The selection in force: -k, else the environment variable, else the config file, else the built-in."""
    if cli_values:
        return Selection(tuple(str(v) for v in cli_values), "-k")
    env = [v for v in os.environ.get(ENV, "").split(os.pathsep) if v.strip()]
    if env:
        return Selection(tuple(env), ENV)
    config = (cwd or Path.cwd()) / CONFIG
    if config.is_file():
        return Selection(_read_config(config), str(config))
    return Selection(BUILT_IN, "the built-in default")


def _read_config(path: Path) -> tuple[str, ...]:
    """`knowledge = [...]` from rulegen.toml; paths are relative to the file's folder."""
    def bad(line: int, message: str) -> KnowledgeError:
        return KnowledgeError([Problem(str(path), line, None, message)])

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise bad(getattr(exc, "lineno", 1) or 1, f"not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise bad(1, f"cannot read the config file: {exc}") from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise bad(1, f"unknown key {unknown[0]!r} (allowed: {', '.join(CONFIG_KEYS)})")
    values = data.get("knowledge")
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise bad(1, 'knowledge must be a non-empty list of folders or @packs, e.g. knowledge = ["@shipped", "site/"]')
    return tuple(v if v.startswith("@") else str(path.parent / v) for v in values)


def resolve(selection: Selection) -> list[Path]:
    """The knowledge roots of a selection, in order. A pack tree (rulegen's knowledge/, `@shipped`) opens into
    its common.yaml and its packs; a pack of a tree brings the tree's common.yaml first; each root once."""
    roots: list[Path] = []
    for value in selection.values:
        for root in _expand(value, selection):
            if root.resolve() not in {r.resolve() for r in roots}:
                roots.append(root)
    return roots


def _expand(value: str, selection: Selection) -> list[Path]:
    if value == SHIPPED:
        return _open_tree(default_knowledge_dir())
    if value.startswith("@"):
        packs = {p.id: Path(p.folder) for p in shipped_packs()}
        if value[1:] not in packs:
            names = ", ".join([SHIPPED, *(f"@{p}" for p in packs)])
            raise SelectionError(f"unknown pack {value!r} in {selection.source} (rulegen ships: {names})")
        return _open_tree(packs[value[1:]])
    return _open_tree(Path(value))


def _open_tree(folder: Path) -> list[Path]:
    """A pack tree as its common.yaml and its packs; a shipped-style pack with its tree's common.yaml; any other
    root as it is."""
    if is_pack_tree(folder):
        return [folder / COMMON_FILE, *pack_folders(folder)]
    if is_pack(folder) and is_pack_tree(folder.parent):
        return [folder.parent / COMMON_FILE, folder]
    return [folder]

