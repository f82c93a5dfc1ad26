"""What the command line writes: JSON Lines on stdout, tables, progress and messages on stderr.

The contract: with ``--json`` stdout carries JSON Lines only, one object per line, every time
ISO-8601 UTC with ``Z``; tables go to stdout without ``--json``; progress bars, warnings and
errors go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.times import jsonable

if TYPE_CHECKING:
    from pydantic import BaseModel
    from rich.console import Console

#: Called with (stage, done, total) as a job advances.
Advance = Callable[[str, int, int], None]


def err() -> Console:
    """Return a console on stderr (160 columns when it is not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    if not console.is_terminal:
        console = Console(stderr=True, soft_wrap=True, width=160)
    return console


def out() -> Console:
    """Return a console on stdout (160 columns when it is not a terminal)."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # pipes and make: do not squeeze tables to 80 columns
    return console


def _json_default(value: object) -> object:
    converted = jsonable(value)
    if converted is not value:
        return converted
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def emit(record: BaseModel | Mapping[str, Any]) -> None:
    """Write one JSON line on stdout: a typed result's own dump, or a mapping.

    Instants become ISO-8601 UTC with ``Z`` (``2017-01-02T00:00:00Z``), dates ISO dates,
    enumerations their values, paths text.
    """
    from pydantic import BaseModel

    payload = record.model_dump(mode="json") if isinstance(record, BaseModel) else dict(record)
    sys.stdout.write(json.dumps(payload, default=_json_default) + "\n")
    sys.stdout.flush()


def emit_all(records: Iterable[BaseModel | Mapping[str, Any]]) -> None:
    """Write one JSON line per record."""
    for record in records:
        emit(record)


def cell(value: object) -> str:
    """Return a value as a table shows it: ``-`` for None, floats to 4 decimals (2 when large)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.2f}"
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def print_table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    right: Iterable[str] = (),
    console: Console | None = None,
    header: bool = True,
    fold: Iterable[str] = (),
) -> None:
    """Print a table: ``columns`` titled, cells as given (text) or shown by :func:`cell`.

    Columns named in ``right`` are right-aligned, those in ``fold`` wrap long text; the table
    goes to stdout unless ``console`` says otherwise.
    """
    from rich.table import Table

    aligned, folded = set(right), set(fold)
    table = Table(title=title, show_header=header)
    for column in columns:
        table.add_column(
            column,
            justify="right" if column in aligned else "left",
            overflow="fold" if column in folded else "ellipsis",
        )
    for row in rows:
        table.add_row(*(v if isinstance(v, str) else cell(v) for v in row))
    (console or out()).print(table)


def pct(value: float | None) -> str:
    """Return a fraction as a percentage with two decimals, ``n/a`` for None."""
    return "n/a" if value is None else f"{100 * value:.2f}%"


def ratio(value: float | None) -> str:
    """Return a ratio with three decimals, ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.3f}"


def warn(messages: Iterable[str]) -> None:
    """Print each message on stderr as a warning."""
    from rich.markup import escape

    console = err()
    for message in messages:
        console.print(f"[yellow]warning:[/] {escape(message)}")


class Progress:
    """A rich progress bar on stderr, fed by (stage, done, total) callbacks.

    Used as ``with Progress(console) as advance: job(..., progress=advance)``; it draws only
    on a terminal.
    """

    def __init__(self, console: Console | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        console = console or err()
        self.bar = Bar(
            TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
            disable=not console.is_terminal,
        )  # fmt: skip
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> Advance:
        self.bar.__enter__()

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in self.tasks:
                self.tasks[stage] = self.bar.add_task(stage, total=total)
            self.bar.update(self.tasks[stage], completed=done, total=total)

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)


def report_error(message: str) -> None:
    """Print an error on stderr, the text escaped (file names may hold ``[brackets]``)."""
    from rich.markup import escape

    err().print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
