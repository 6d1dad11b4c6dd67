"""``sdnseg fit --data.verify true``: read every item of every split once before training.

Data problems (an unreadable file, a mask of another size, class ids out of range) otherwise
surface only when the bad item is drawn, possibly hours into a run. :func:`verify_dataset` loads
each item without transforms (``dataset.load``), with a progress bar, and reports every bad file
found, not only the first.
"""

from __future__ import annotations

from typing import Any

from rich.progress import track

from sdnseg.data.base import shown

__all__ = ["verify_dataset"]


def verify_dataset(dataset: Any, split: str, show_progress: bool = True) -> int:
    """Load every item of ``dataset`` once; return the count checked.

    Raises:
        ValueError: one or more items could not be loaded; the message names each file
            (the first five) and how many failed.
    """
    load = getattr(dataset, "load", dataset.__getitem__)
    indices = range(len(dataset))
    if show_progress:
        indices = track(indices, description=f"checking {split} ({len(dataset)} items)")
    problems = []
    for index in indices:
        try:
            load(index)
        except (ValueError, FileNotFoundError) as err:
            problems.append(str(err))
    if problems:
        raise ValueError(
            f"--data.verify: {len(problems)} of {len(dataset)} {split} items cannot be used: "
            f"{shown(problems)}"
        )
    return len(dataset)
