"""What every page of the dashboard shares: the desk's settings, cached reads, the messages for
what is missing, tables and charts, the page frame that refreshes itself, and the login.

Pages read the desk only through :mod:`services` (the views in :mod:`services.views`), and only
through :func:`read`: a call ``fn(settings, *args)`` cached for ``[dashboard] cache_seconds``
and keyed on the desk's home, so two desks never share an entry. A read that raises one of
solodesk's own errors (no such session, a store not built yet) shows its message instead of a
traceback; anything else is a bug and shows as one.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, ParamSpec, TypeVar

import polars as pl
import streamlit as st

from core.errors import SolodeskError
from core.settings import Settings, config_file, load_settings

P = ParamSpec("P")
R = TypeVar("R")

#: The session-state key holding the name of the person logged in.
WHO = "solodesk_who"


def settings() -> Settings:
    """Return the desk's settings (``SOLODESK_HOME`` and ``solodesk.toml``, read each run)."""
    return load_settings()


def _desk_key() -> tuple[str, str, float]:
    """Return what identifies the desk a read is about: its home, the settings file and the
    file's modification time (an edited file is a new desk for the cache)."""
    path = config_file()
    stamp = path.stat().st_mtime if path.exists() else 0.0
    return (os.path.abspath(os.environ.get("SOLODESK_HOME", "data")), str(path), stamp)


def _resolve(name: str) -> Callable[..., Any]:
    module, _, qualname = name.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _call(name: str, desk: tuple[str, str, float], args: tuple[Any, ...]) -> Any:
    del desk  # the key only: settings are read afresh below
    return _resolve(name)(settings(), *args)


@cache
def _cached(ttl: float) -> Callable[..., Any]:
    return st.cache_data(ttl=ttl, show_spinner=False, max_entries=256)(_call)


def read(fn: Callable[..., R], *args: Any) -> R:
    """Return ``fn(settings, *args)``, cached for ``[dashboard] cache_seconds`` per desk.

    ``fn`` must be a module-level function; its arguments and result must pickle (typed frozen
    models, frames, figures).
    """
    ttl = settings().dashboard.cache_seconds
    name = f"{fn.__module__}:{fn.__qualname__}"
    return _cached(ttl)(name, _desk_key(), args)


def forget() -> None:
    """Drop every cached read (after a control, or when the person asks for fresh figures)."""
    st.cache_data.clear()


def missing(what: str, command: str | None = None) -> None:
    """Say what is missing and, when given, the command that provides it."""
    if command is None:
        st.info(what)
    else:
        st.info(f"{what}. `{command}` provides it.")


def table(rows: pl.DataFrame | Sequence[Mapping[str, Any]], **options: Any) -> None:
    """Show rows (a frame or a list of mappings) as a table with its index hidden."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows))
    st.dataframe(frame, hide_index=True, **options)


def chart(figure: Any, key: str | None = None) -> None:
    """Show a Plotly figure across the page's width."""
    st.plotly_chart(figure, key=key, config={"displaylogo": False})


def picture(svg: str, alt: str) -> None:
    """Show a chart drawn as an SVG picture across the page's width."""
    st.image(svg, width="stretch", alt=alt)


@contextmanager
def explained() -> Iterator[None]:
    """Show solodesk's own errors (bad settings, a store not built yet) as a message."""
    try:
        yield
    except SolodeskError as exc:
        st.warning(str(exc))


def page(title: str, render: Callable[[], None], *, refresh: bool = True) -> None:
    """Run a page: its title, then ``render`` in a fragment that reruns itself every
    ``[dashboard] refresh_seconds`` (when ``refresh`` and the setting is not 0)."""
    st.title(title)
    with explained():
        seconds = settings().dashboard.refresh_seconds if refresh else 0.0
        if seconds > 0:
            st.fragment(run_every=seconds)(_guarded(render))()
        else:
            render()


def _guarded(render: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with explained():
            render()

    return run


def pick(
    label: str,
    names: Sequence[str],
    key: str,
    default: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> str:
    """Show a selectbox of ``names`` (each shown as its entry in ``labels``, else itself)
    opening on ``default`` (else the first); a remembered choice that is no longer offered is
    forgotten. Return the name chosen."""
    if st.session_state.get(key) not in names:
        st.session_state.pop(key, None)
    index = names.index(default) if default in names and key not in st.session_state else None
    options: dict[str, Any] = {} if index is None else {"index": index}
    if labels is not None:
        shown = dict(labels)
        options["format_func"] = lambda name: shown.get(name, name)
    return str(st.selectbox(label, names, key=key, **options))


# -- login -----------------------------------------------------------------------------------


def who() -> str | None:
    """Return the name of the person logged in to this browser session, or None."""
    name = st.session_state.get(WHO)
    return str(name) if name else None


def log_in(name: str) -> None:
    """Record that ``name`` logged in to this browser session."""
    st.session_state[WHO] = name


def log_out() -> None:
    """Forget the login of this browser session."""
    st.session_state.pop(WHO, None)
