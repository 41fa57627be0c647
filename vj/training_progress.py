"""Bookkeeping of a cascade training run: seconds per phase, and progress bars.

Training code states *what* it does (``with progress.phase("boost"): ...``);
this object keeps the time that took and draws the bars, so the algorithm in
:mod:`vj.training` reads without timers threaded through it.

The seconds of the stage under way are part of the training checkpoint: a
checkpoint written in the middle of a phase first adds the time spent so far
(:meth:`TrainingProgress.lap`), so a run killed and resumed reports the time
all its sessions spent on the stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tqdm.auto import tqdm

__all__ = ["PHASES", "TrainingProgress"]

PHASES = ("mining", "features", "boost")
"""The timed phases of a stage; the report records ``<phase>_s`` for each."""


@dataclass
class TrainingProgress:
    """Seconds per phase of the stage being trained, and the run's progress bars.

    Attributes
    ----------
    seconds : dict of str to float
        ``"<phase>_s"``: seconds spent on each phase of the current stage, over
        every session (checkpointed).
    show : bool
        Draw tqdm progress bars.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    show: bool = True
    _phase: str | None = field(default=None, repr=False)
    _since: float = field(default=0.0, repr=False)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Count the time the block takes as phase ``name`` of the current stage."""
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; phases: {PHASES}")
        self._phase, self._since = name, time.monotonic()
        try:
            yield
        finally:
            self.lap()
            self._phase = None

    def lap(self) -> None:
        """Add the time since the phase began (or the last lap) to it; call before saving."""
        if self._phase is None:
            return
        now = time.monotonic()
        key = f"{self._phase}_s"
        self.seconds[key] = self.seconds.get(key, 0.0) + now - self._since
        self._since = now

    def next_stage(self) -> None:
        """Start the clock of a new stage from zero."""
        self.seconds = {}

    def stage_times(self) -> dict[str, float]:
        """The report's time columns: ``<phase>_s`` for each phase, and ``time_s``, in 0.1 s."""
        times = {f"{p}_s": round(self.seconds.get(f"{p}_s", 0.0), 1) for p in PHASES}
        times["time_s"] = round(sum(times.values()), 1)
        return times

    def bar(self, desc: str, total: int, unit: str, *, initial: int = 0,
            leave: bool = False) -> tqdm:
        """A progress bar (a disabled one when bars are off); use it as a context manager."""
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not self.show,
                    leave=leave)
