"""Terminal output: readable tables to stdout, progress and errors to stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from exchange.config import Problem

# Not a terminal (CI logs, pipes): rich would assume 80 columns and fold every table.
_WIDTH = None if sys.stdout.isatty() else 160
out = Console(highlight=False, width=_WIDTH)
# Messages are never folded: a path cut in two cannot be copied.
err = Console(stderr=True, highlight=False, width=_WIDTH, soft_wrap=True)


def progress(message: str) -> None:
    err.print(f"[dim]…[/dim] {message}")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    out.print(make_table(title, columns, rows))


def make_table(
    title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]]
) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, column in enumerate(columns):
        # The first column is an identifier: never fold it mid-word.
        t.add_column(column, overflow="fold", no_wrap=i == 0)
    for row in rows:
        t.add_row(*("" if cell is None else str(cell) for cell in row))
    return t


def problems(found: Sequence[Problem]) -> None:
    for p in found:
        where = f"{p.file}:{p.line}" if p.line else str(p.file)
        err.print(
            f"[red]✗[/red] [bold]{escape(where)}[/bold]: {escape(p.path)}: {escape(p.message)}"
        )
    err.print(f"[red]{len(found)} problem(s)[/red]")
