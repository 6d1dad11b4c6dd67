"""The ``sdnseg`` commands a study runs, and reading back what they wrote.

Every number of a study comes from an ordinary command run in a subprocess (so it can be
reproduced by the command logged beside it): ``sdnseg fit``, ``sdnseg test`` (with the
evaluator's suite, ``--report``), and for a SegFix re-test ``sdnseg segfix`` of the tested run's
recorded label maps followed by ``sdnseg evaluate`` of the refined ones. This module builds
those command lines and parses their outputs; :mod:`sdnseg.studies.runner` decides which to run.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sdnseg.studies.spec import RunSpec, Study, run_dir, study_datamodule

__all__ = [
    "evaluate_command",
    "fit_command",
    "logged_seconds_per_step",
    "read_metrics_csv",
    "run_command",
    "segfix_command",
    "split_folders",
    "suite_metrics",
    "test_command",
]


def fit_command(study: Study, run: RunSpec, seed: int, resume: Path | None) -> list[str]:
    """The ``sdnseg fit`` command of one (configuration, seed), resuming from ``resume`` if given."""
    folder = run_dir(study, run, seed)
    cmd = ["sdnseg", "fit", "--config", study.config, "--model.arch", run.arch]
    if run.overrides:
        cmd += ["--model.model_overrides", json.dumps(run.overrides)]
    cmd += ["--seed_everything", str(seed), "--runs_dir", str(folder.parent), "--name", folder.name]
    cmd += [*study.args, *run.args]
    if resume is not None:
        cmd += ["--ckpt_path", str(resume)]
    return cmd


def test_command(
    study: Study,
    run: RunSpec,
    seed: int,
    checkpoint: Path,
    segfix: Path | None = None,
    save_predictions: bool = False,
) -> list[str]:
    """The ``sdnseg test`` command scoring ``checkpoint`` at the study's scales and flip, with
    an evaluation run's post-processing (``segfix``: the SegFix checkpoint) and, with
    ``save_predictions``, the scored label maps written beside the suite."""
    folder = run_dir(study, run, seed)
    cmd = ["sdnseg", "test", "--config", study.config, "--ckpt_path", str(checkpoint)]
    cmd += ["--runs_dir", str(folder), "--name", "test", "--trainer.enable_progress_bar", "false"]
    # The evaluator's suite (Boundary IoU, trimap curve) of the prediction the row reports.
    cmd += ["--report", str(folder / "test" / "report"), "--report_top_k", "0"]
    if save_predictions:
        cmd += ["--report_predictions", "true"]
    cmd += ["--model.test_scales", json.dumps(study.test_scales)]
    cmd += ["--model.test_flip", str(study.test_flip).lower()]
    if run.postprocess is not None:
        cmd += ["--model.postprocess", run.postprocess]
    if segfix is not None:
        cmd += ["--model.segfix_checkpoint", str(segfix)]
    return [*cmd, *study.args, *run.args]


def split_folders(study: Study) -> tuple[Path, Path]:
    """The folders of the images and of the ground truth of the split ``sdnseg test`` scores."""
    dm = study_datamodule(study)
    samples = dm.dataset_class.build(dm.root, dm.test_split).samples
    images = Path(os.path.commonpath([str(image.parent) for image, _ in samples]))
    masks = Path(os.path.commonpath([str(mask.parent) for _, mask in samples]))
    return images, masks


def segfix_command(checkpoint: Path, pred: Path, images: Path, output: Path) -> list[str]:
    """``sdnseg segfix`` of the label maps in ``pred`` (of the images in ``images``)."""
    cmd = ["sdnseg", "segfix", "--checkpoint", str(checkpoint), "--pred", str(pred)]
    return [*cmd, "--images", str(images), "--output", str(output)]


def evaluate_command(study: Study, pred: Path, gt: Path, output: Path) -> list[str]:
    """``sdnseg evaluate`` of the label maps in ``pred`` with the study dataset's conventions."""
    dataset = study_datamodule(study).name
    cmd = ["sdnseg", "evaluate", "--pred", str(pred), "--gt", str(gt), "--dataset", dataset]
    return [*cmd, "--output", str(output), "--top-k", "0", "--no-progress"]


def run_command(
    cmd: list[str], log: Path, heartbeat: Callable[[], None] | None = None, every: float = 30.0
) -> None:
    """Run an sdnseg command through this Python (so the right install runs it), log appended.

    ``heartbeat`` is called every ``every`` seconds while the command runs and once when it ends.
    """
    full = [sys.executable, "-m", "sdnseg.engine.cli", *cmd[1:]]
    with log.open("a") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n")
        out.flush()
        with subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT) as process:
            try:
                while True:
                    try:
                        code = process.wait(timeout=every)
                        break
                    except subprocess.TimeoutExpired:
                        if heartbeat is not None:
                            heartbeat()
            except BaseException:
                # Popen's exit would otherwise wait out the whole fit before the error shows.
                process.kill()
                raise
        if heartbeat is not None:
            heartbeat()
    if code != 0:
        raise RuntimeError(f"command failed with exit code {code} (see {log}): {shlex.join(cmd)}")


def read_metrics_csv(folder: Path) -> list[dict[str, float]]:
    """The rows of every ``version_*/metrics.csv`` under ``folder``, empty cells left out."""
    rows = []
    for path in sorted(folder.glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def suite_metrics(evaluation: Path) -> dict[str, float]:
    """A row's metrics from an ``evaluation.json`` alone (what ``sdnseg evaluate`` writes): its
    headline (mIoU, mAcc, aAcc, boundary F, mBIoU, trimap) and ``IoU/<class>``, the names
    ``sdnseg test`` logs."""
    suite = json.loads(evaluation.read_text())
    per_class = {f"IoU/{name}": scores["IoU"] for name, scores in suite["per_class"].items()}
    return {**suite["headline"], **per_class}


def logged_seconds_per_step(folder: Path) -> float | None:
    """Wall seconds per training step, from the TensorBoard event times of a run's fit segments.

    Each ``version_*`` folder is one segment (a fit, or a resume of it): the time from its first
    to its last logged value, over the steps in between. Validation is included; start-up and
    the time between a killed segment and its resume are not, so a run resumed across sessions
    is timed like one that ran through. A segment that logged a single step adds nothing. ``None``
    when no segment logged more than one step.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seconds = steps = 0.0
    for version in folder.glob("version_*"):
        events = EventAccumulator(str(version), size_guidance={"scalars": 0})
        events.Reload()
        scalars = [e for tag in events.Tags()["scalars"] for e in events.Scalars(tag)]
        if not scalars:
            continue
        first = min(scalars, key=lambda e: e.wall_time)
        last = max(scalars, key=lambda e: e.wall_time)
        if last.step > first.step:
            seconds += last.wall_time - first.wall_time
            steps += last.step - first.step
    return seconds / steps if steps > 0 else None
