"""The loop's clocks: simulated time in a replay, the wall clock live (:class:`core.ports.Clock`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from core.times import utc_from_ns


class SimClock:
    """Replay time: the loop sets it to the bar it is at; ``speed`` paces it against the wall.

    With ``speed`` N, advancing the clock by one second of market time waits 1/N s of wall
    time (an H1 bar lasts 3600/N s); with None it never waits (as fast as the loop runs).
    """

    #: Longest single sleep of a paced replay: between slices the loop answers its controls.
    SLICE = 0.2

    def __init__(self, speed: float | None = None) -> None:
        self.speed = speed
        # Called before and between the sleeps of a paced replay (the loop commits and applies
        # its controls there); returning True ends the wait at once (a stop was asked for).
        self.on_wait: Callable[[], bool] | None = None
        self._ns = 0
        self._wall_origin: float | None = None
        self._sim_origin = 0

    def set_ns(self, ns: int) -> None:
        """Move the clock to ``ns`` (UTC ns), waiting for it when the replay is paced."""
        if self.speed is not None:
            if self._wall_origin is None:
                self._wall_origin = time.monotonic()
                self._sim_origin = ns
            due = self._wall_origin + (ns - self._sim_origin) / 1e9 / self.speed
            while (wait := due - time.monotonic()) > 0:
                if self.on_wait is not None and self.on_wait():
                    break
                time.sleep(min(wait, self.SLICE))
        self._ns = ns

    def now_ns(self) -> int:
        """Return the current time in UTC ns."""
        return self._ns

    def now(self) -> datetime:
        """Return the current (simulated) time."""
        return utc_from_ns(self._ns)

    def monotonic(self) -> float:
        """Return wall seconds from an arbitrary origin (latencies are real even in a replay)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of wall time (a paused replay still answers its controls)."""
        time.sleep(seconds)


class WallClock:
    """Live time: UTC from the system clock, monotonic for latencies."""

    def set_ns(self, ns: int) -> None:
        """Ignore: live time is not set by the bars."""

    def now_ns(self) -> int:
        """Return the current time in UTC ns."""
        return time.time_ns()

    def now(self) -> datetime:
        """Return the current time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        time.sleep(seconds)
