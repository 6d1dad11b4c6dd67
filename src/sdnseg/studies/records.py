"""The committed record of a finished study run: what survives the machine that made it.

A study runs for many sessions, and a session's machine keeps nothing it did not commit: the run
folders under ``output_dir`` (checkpoints, TensorBoard logs) are gone with it. So each finished
(configuration, seed) also leaves a small record under ``<results>_runs/<name>/seed<k>/``, meant
for git:

- ``result.json``: the runner's result (metrics, history, timing, the commands, model cost),
  written last: its presence means the record is whole;
- ``commands.log``: the output of every command the run made (fit and test);
- ``metrics/``: every ``metrics.csv`` of its fit segments and test, by folder;
- ``evaluation.json``: the test's :class:`~sdnseg.metrics.MetricSuite` (Boundary IoU, trimap
  curve, per-class boundary F, confusion), from ``sdnseg test --report``;
- ``qualitative/<image>.png``: the label maps it predicts for the study's qualitative images, so
  the comparison figure can be drawn after its checkpoint is gone;
- ``predictions/<image>_labels.png``: for a run that a SegFix row re-tests, every label map its
  test scored (``sdnseg test --report_predictions``), which ``sdnseg segfix`` refines in a later
  session (~3.5 KB an image on CamVid).

The runner takes a record as a finished run, so a restart in a fresh clone runs only what is
missing. The whole record is written to a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sdnseg.evaluation.outputs import write_label_png
from sdnseg.io import TEMP_MARKER
from sdnseg.studies.spec import RunSpec, Study

__all__ = [
    "EVALUATION",
    "PREDICTIONS",
    "RESULT",
    "read_qualitative",
    "read_record",
    "record_dir",
    "recorded_predictions",
    "write_record",
]

RESULT = "result.json"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions"


def record_dir(study: Study, run: RunSpec, seed: int) -> Path:
    """The committed record of one (configuration, seed)."""
    return Path(f"{study.results}_runs") / run.name / f"seed{seed}"


def read_record(study: Study, run: RunSpec, seed: int) -> dict[str, Any] | None:
    """The result of a finished run from its record, or None when it has none."""
    path = record_dir(study, run, seed) / RESULT
    return json.loads(path.read_text()) if path.is_file() else None


def recorded_predictions(study: Study, run: RunSpec, seed: int) -> Path | None:
    """The folder of the label maps a finished run's test scored, if its record keeps them."""
    record = record_dir(study, run, seed)
    made = (record / RESULT).is_file() and any((record / PREDICTIONS).glob("*_labels.png"))
    return record / PREDICTIONS if made else None


def write_record(
    study: Study,
    run: RunSpec,
    seed: int,
    folder: Path,
    result: dict[str, Any],
    qualitative: dict[int, np.ndarray] | None = None,
) -> Path:
    """Copy a finished run's logs, metrics, suite and predictions from its run ``folder`` into
    its record, with ``result`` and the ``qualitative`` label maps (image index -> (H, W));
    atomically."""
    target = record_dir(study, run, seed)
    staging = target.with_name(f"{target.name}{TEMP_MARKER}{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if (folder / "commands.log").is_file():
        shutil.copy2(folder / "commands.log", staging / "commands.log")
    for csv in sorted(folder.rglob("metrics.csv")):
        name = "__".join(csv.relative_to(folder).parts)  # test__version_0__metrics.csv
        (staging / "metrics").mkdir(exist_ok=True)
        shutil.copy2(csv, staging / "metrics" / name)
    suite = folder / "test" / "report" / EVALUATION
    if suite.is_file():
        shutil.copy2(suite, staging / EVALUATION)
    predictions = folder / "test" / "report" / PREDICTIONS
    if predictions.is_dir():
        shutil.copytree(predictions, staging / PREDICTIONS)
    for index, labels in (qualitative or {}).items():
        write_label_png(staging / "qualitative" / f"{index}.png", labels)
    (staging / RESULT).write_text(json.dumps(result, indent=2) + "\n")
    if target.exists():  # a record of an earlier try of this run: replaced whole
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def read_qualitative(
    study: Study, run: RunSpec, seed: int, indices: list[int]
) -> list[np.ndarray] | None:
    """The recorded label maps of ``indices``, or None when any is missing."""
    from PIL import Image

    folder = record_dir(study, run, seed) / "qualitative"
    paths = [folder / f"{i}.png" for i in indices]
    if not all(p.is_file() for p in paths):
        return None
    labels = []
    for path in paths:
        with Image.open(path) as image:
            labels.append(np.asarray(image))
    return labels
