"""What the CLI does when a run fails: a one-line message, and no empty run folder left behind.

A data error raised in a DataLoader worker reaches the main process re-raised by torch with the
worker's whole traceback in its message ("Caught ValueError in DataLoader worker process 0.
Original Traceback ..."); :func:`user_message` keeps the original message only.

Each run folder the CLI creates is noted (:func:`note_run_dir`); when the run fails,
:func:`remove_unused_run_dirs` removes those that hold neither a checkpoint nor a logged metric
(a run that failed at setup), so ``version_N`` numbers are not used up by failures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["end_run_dirs", "note_run_dir", "remove_unused_run_dirs", "user_message"]

_WORKER_MARK = "in DataLoader worker process"
_run_dirs: list[Path] = []


def user_message(err: BaseException) -> str:
    """``str(err)``, without the worker traceback torch adds to errors raised in workers."""
    text = str(err)
    if _WORKER_MARK not in text.split("\n", 1)[0] or "Traceback" not in text:
        return text
    prefix = f"{type(err).__name__}: "
    lines = text.splitlines()
    # The traceback ends with "<Type>: <message>" (the message may span lines).
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith(prefix):
            return "\n".join([lines[start][len(prefix) :], *lines[start + 1 :]]).strip()
    return lines[-1]


def note_run_dir(folder: Path) -> None:
    """Remember a run folder created for this command."""
    _run_dirs.append(Path(folder))


def _unused(folder: Path) -> bool:
    if any(folder.rglob("*.ckpt")):
        return False
    metrics = folder / "metrics.csv"
    return not metrics.is_file() or len(metrics.read_text().splitlines()) <= 1


def remove_unused_run_dirs() -> list[Path]:
    """Delete the noted run folders that hold no checkpoint and no metric; return them."""
    removed = []
    while _run_dirs:
        folder = _run_dirs.pop()
        if folder.is_dir() and _unused(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def end_run_dirs(failed: bool) -> None:
    """At the end of a command: remove the unused run folders if it failed, forget them else."""
    if failed:
        remove_unused_run_dirs()
    _run_dirs.clear()
