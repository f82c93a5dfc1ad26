"""Errors every layer raises; the command line maps them to exit statuses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class SolodeskError(Exception):
    """Base class of every error solodesk raises on purpose."""

    exit_code = 1


class UsageError(SolodeskError):
    """Bad usage or bad input: the caller can fix it (exit status 2)."""

    exit_code = 2


class DataError(UsageError):
    """Unreadable or unusable input data, naming the source and line where there is one."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None) -> None:
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(f"{where}{message}")


def validation_problems(exc: ValidationError, empty: str = "") -> str:
    """Return each problem pydantic found as ``key.path: message``, joined by ``; ``.

    A problem of the whole input (no key) is named ``empty``.
    """
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or empty}: {e['msg']}" for e in exc.errors()
    )


def options_error(what: str, exc: ValidationError) -> UsageError:
    """Return a usage error listing each rejected option of a configuration and why.

    ``what`` names the configuration (``backtest``, ``walk-forward``, ``portfolio``).
    """
    return UsageError(f"bad {what} options: {validation_problems(exc, 'options')}")
