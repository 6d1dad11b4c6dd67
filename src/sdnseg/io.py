"""Atomic file writes: the one way sdnseg writes a file that a reader may open at any time.

A checkpoint, a figure, a report or an ONNX model is first written to a temporary file beside
its target (same folder, hence the same file system), flushed to disk, and then renamed over the
target with ``os.replace``, which is atomic on POSIX and Windows. A crash or an exception mid-write
leaves the previous file whole and no temporary file behind.

This module is the bottom layer of the package: it imports nothing of sdnseg.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["TEMP_MARKER", "atomic_write", "fsync_dir"]

# Temporary files are named ``.<target name>.tmp-<pid>-<random><suffix>``; the marker lets a
# cleaner find the ones a killed process left behind.
TEMP_MARKER = ".tmp-"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path`` atomically.

    The temporary file keeps the target's suffix, so writers that choose a format by extension
    (``Figure.savefig``, ``torch.onnx.export``) write the right one. Missing parent folders are
    created. If the body raises, the temporary file is removed and the target left untouched.

    >>> with atomic_write("outputs/summary.json") as tmp:
    ...     tmp.write_text("{}")

    Args:
        path: the target file.
        fsync: flush the file and the folder entry to disk before and after the rename, so that
            the new content survives a power loss (the cost is one ``fsync`` per write).
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(
        f".{target.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}{target.suffix}"
    )
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"nothing was written for {target} (expected {temp.name})")
        if fsync:
            with open(temp, "rb+") as file:
                os.fsync(file.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(target.parent)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Persist a folder's entries (a rename) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
