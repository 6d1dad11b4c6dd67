"""SIGTERM and SIGINT during ``sdnseg fit``: save a resumable checkpoint, then exit 143 / 130.

Cluster schedulers send SIGTERM before they preempt a job; Ctrl+C sends SIGINT. Lightning's own
handling loses the work since the last periodic save: on one process it notes SIGTERM and only
stops at the end of the epoch (with a ``SystemExit`` that carries no code, read as success), and
SIGINT becomes a ``KeyboardInterrupt`` wherever the program happens to be.

:class:`SaveOnSignal` notes the signal (SIGTERM through Lightning's ``trainer.received_sigterm``,
SIGINT through its own handler) and acts at the end of the current training step, the point
where a checkpoint resumes exactly: it writes ``last.ckpt`` through the run's
:class:`~sdnseg.engine.callbacks.LastCheckpoint` and raises :class:`Interrupted`, a
``SystemExit`` with code ``128 + signal`` (143 for SIGTERM, 130 for SIGINT), after printing where
the checkpoint is. A second Ctrl+C stops at once (Python's default handler is back by then).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from sdnseg.engine.callbacks import LastCheckpoint

__all__ = ["Interrupted", "SaveOnSignal"]


class Interrupted(SystemExit):
    """The run stopped on a signal after saving; ``code`` is ``128 + signum``."""

    def __init__(self, signum: int, path: str | None) -> None:
        super().__init__(128 + signum)
        self.signum, self.path = signum, path


class SaveOnSignal(Callback):
    """Save ``last.ckpt`` and exit non-zero on SIGTERM / SIGINT (see the module docstring)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous_sigint: Any = None

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl+C: stop now

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread: leave SIGINT as it is
            self._previous_sigint = None

    def _restore(self) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exc: Any) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if getattr(trainer, "received_sigterm", False):
            self.received = signal.SIGTERM
        if self.received is None:
            return
        signum = self.received
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        path = None
        if last is not None:
            last.save(trainer)
            path = last.last_good[0] if last.last_good is not None else None
        if trainer.is_global_zero:
            name = signal.Signals(signum).name
            where = (
                f"saved a resumable checkpoint at step {trainer.global_step}: {path}\n"
                f"resume with: --ckpt_path {path}"
                if path is not None
                else "no checkpoint was saved (no LastCheckpoint callback)"
            )
            print(f"interrupted by {name}; {where}", file=sys.stderr, flush=True)
        raise Interrupted(signum, path)
