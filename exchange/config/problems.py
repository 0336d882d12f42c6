"""Problems found in configuration, each naming the file, the field path and the line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from exchange.errors import ExchangeError

Loc = tuple[str | int, ...]


def format_loc(loc: Sequence[str | int]) -> str:
    """``("entries", 0, "key")`` -> ``entries[0].key``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one place in one configuration file."""

    file: Path
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.path}: {self.message}"


class ConfigError(ExchangeError):
    """Configuration could not be loaded; carries every problem found, not only the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s):\n{lines}", code="config")


def problems_from_validation(
    exc: ValidationError,
    file: Path,
    lines: dict[Loc, int],
    data: Any,
    prefix: Loc = (),
) -> list[Problem]:
    """Turn a pydantic error into problems, each with the nearest known line of its field.

    ``data`` is what was validated: it lets us drop the union-member tags pydantic puts into
    error locations (``int``, ``function-after[...]``), which are not part of the user's path.
    """
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + _data_path(data, tuple(err["loc"]))
        out.append(Problem(file, format_loc(loc), _message(err), nearest_line(lines, loc)))
    return out


def _data_path(data: Any, loc: Loc) -> Loc:
    kept: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:  # noqa: SIM114 - separate for mypy
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif i < len(loc) - 1:
            continue  # a union tag, not a key of the user's data
        kept.append(part)
    return tuple(kept)


def _message(err: object) -> str:
    assert isinstance(err, dict)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown field"
    if err.get("type") == "missing":
        return "required field is missing"
    return msg


def nearest_line(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its closest ancestor that has one (a missing key has none)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
