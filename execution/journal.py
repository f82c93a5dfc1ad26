"""The runtime's commit points: everything written since the last one becomes durable at once.

The loop, the paper broker and the trade log write into one SQLite transaction
(:class:`feature_store.state.StateDB`); :meth:`Journal.commit` first lets each writer put its
in-memory state down (the paper broker's account, the risk state), then commits. A process
killed between two commits loses exactly what was written since the last one, and restarts from
a state in which every part agrees.
"""

from __future__ import annotations

from collections.abc import Callable

from feature_store.state import StateDB


class Journal:
    """One state database and the writers that must save themselves before each commit."""

    def __init__(self, db: StateDB) -> None:
        self.db = db
        self._savers: list[Callable[[], None]] = []
        self.commits = 0

    def before_commit(self, saver: Callable[[], None]) -> None:
        """Call ``saver`` before every commit (it writes its state into the transaction)."""
        self._savers.append(saver)

    def commit(self) -> None:
        """Save every registered writer's state, then commit the transaction."""
        for saver in self._savers:
            saver()
        self.db.commit()
        self.commits += 1
