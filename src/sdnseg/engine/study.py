"""``sdnseg study STUDY.yaml``: run a matrix of ``sdnseg fit`` / ``sdnseg test`` runs and report it.

Every run is an ordinary ``sdnseg`` command, run in a subprocess, so each number in the report can
be reproduced by the command printed beside it. The runner can be killed at any moment and
restarted: a finished run (``result.json``) is skipped, an interrupted one resumes from its newest
``last.ckpt`` (model, optimiser, schedule, data-loader position and random state), and the report
is rewritten from whatever has finished.

A study file (see ``configs/studies/camvid.yaml``)::

    config: configs/studies/camvid_fcn.yaml   # the frozen sdnseg fit config shared by all runs
    output_dir: runs/study_camvid             # checkpoints and logs (not for git)
    results: benchmarks/results/camvid_study  # <results>.json, .md and figures
    test_scales: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    test_flip: true
    args: ["--data.root", "../shared/data/camvid"]   # extra arguments for every command
    runs:
      - {name: fcn_r18d8, arch: fcn_r18d8, seeds: [0, 1, 2]}
      - {name: fcn_r18d8_sdn, arch: fcn_r18d8_sdn, seeds: [0, 1, 2], pair: fcn_r18d8}
      - {name: fcn_sdn_conv, arch: fcn_r18d8_sdn, overrides: {operator: conv}, seeds: [0, 1]}
    # Figure: image, ground truth, baseline and variant with error maps, for these test images
    qualitative: {variants: [fcn_r18d8_sdn], images: [0, 25, 50, 75], seed: 0}

Runs listed together that share a baseline go seed by seed (baseline seed 0, each variant seed 0,
baseline seed 1, ...), so a cut-off study still has paired seeds and every variant at seed 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

RESULT = "result.json"
TIMING = "timing.json"


@dataclass
class RunSpec:
    """One configuration of the matrix; ``pair`` names the baseline it is compared with."""

    name: str
    arch: str
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    pair: str | None = None
    args: list[str] = field(default_factory=list)


@dataclass
class Study:
    config: str
    output_dir: Path
    results: Path
    runs: list[RunSpec]
    test_scales: list[float] = field(default_factory=lambda: [1.0])
    test_flip: bool = False
    args: list[str] = field(default_factory=list)
    qualitative: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Study:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        missing = {"config", "output_dir", "results", "runs"} - set(raw)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}")
        known = {f for f in RunSpec.__dataclass_fields__}
        runs = []
        for entry in raw["runs"]:
            unknown = set(entry) - known
            if unknown:
                raise ValueError(f"{path}: run {entry.get('name')!r} has unknown keys {unknown}")
            runs.append(RunSpec(**entry))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: run names must be unique, got {names}")
        for run in runs:
            if run.pair is not None and run.pair not in names:
                raise ValueError(f"{path}: run {run.name!r} pairs with unknown run {run.pair!r}")
        qualitative = raw.get("qualitative") or {}
        unknown = set(qualitative) - {"variants", "images", "seed"}
        if unknown:
            raise ValueError(f"{path}: qualitative has unknown keys {unknown}")
        paired = {r.name for r in runs if r.pair is not None}
        for variant in qualitative.get("variants", []):
            if variant not in paired:
                raise ValueError(
                    f"{path}: qualitative variant {variant!r} is not a run with a pair"
                )
        return cls(
            config=raw["config"],
            output_dir=Path(raw["output_dir"]),
            results=Path(raw["results"]),
            runs=runs,
            test_scales=list(raw.get("test_scales", [1.0])),
            test_flip=bool(raw.get("test_flip", False)),
            args=[str(a) for a in raw.get("args", [])],
            qualitative=qualitative,
        )


def _goes_with(block: list[RunSpec], run: RunSpec) -> bool:
    """Whether ``run`` shares the block's baseline, or pairs with the block's only run."""
    first = block[0]
    return run.pair is not None and (
        run.pair == (first.pair or first.name) or (len(block) == 1 and run.pair == first.name)
    )


def schedule(study: Study) -> list[tuple[RunSpec, int]]:
    """The order runs are made in: the file's order, except that consecutive runs sharing a
    baseline (with that baseline, when listed right before them) go seed by seed, all of seed 0
    first; so does a run with the run just before it, if it pairs with it."""
    blocks: list[list[RunSpec]] = []
    for run in study.runs:
        if blocks and _goes_with(blocks[-1], run):
            blocks[-1].append(run)
        else:
            blocks.append([run])
    order = []
    for block in blocks:
        seeds = sorted({seed for run in block for seed in run.seeds})
        order += [(run, seed) for seed in seeds for run in block if seed in run.seeds]
    return order


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: a killed runner never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, payload: Any) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def run_dir(study: Study, run: RunSpec, seed: int) -> Path:
    return study.output_dir / run.name / f"seed{seed}"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest ``version_*/checkpoints/last.ckpt`` under a run's folder."""
    candidates = sorted(folder.glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    return candidates[-1] if candidates else None


def fit_command(study: Study, run: RunSpec, seed: int, resume: Path | None) -> list[str]:
    folder = run_dir(study, run, seed)
    cmd = ["sdnseg", "fit", "--config", study.config, "--model.arch", run.arch]
    if run.overrides:
        cmd += ["--model.model_overrides", json.dumps(run.overrides)]
    cmd += ["--seed_everything", str(seed), "--runs_dir", str(folder.parent), "--name", folder.name]
    cmd += [*study.args, *run.args]
    if resume is not None:
        cmd += ["--ckpt_path", str(resume)]
    return cmd


def test_command(study: Study, run: RunSpec, seed: int, checkpoint: Path) -> list[str]:
    folder = run_dir(study, run, seed)
    cmd = ["sdnseg", "test", "--config", study.config, "--ckpt_path", str(checkpoint)]
    cmd += ["--runs_dir", str(folder), "--name", "test", "--trainer.enable_progress_bar", "false"]
    cmd += ["--model.test_scales", json.dumps(study.test_scales)]
    cmd += ["--model.test_flip", str(study.test_flip).lower(), *study.args, *run.args]
    return cmd


def _run(
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


def _read_metrics_csv(folder: Path) -> list[dict[str, float]]:
    rows = []
    for path in sorted(folder.glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _model_cost(run: RunSpec, num_classes: int, size: tuple[int, int]) -> dict[str, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sdnseg.models import create_model

    model = create_model(run.arch, num_classes, **run.overrides).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, *size))
    return {
        "params": sum(p.numel() for p in model.parameters()),
        # The SDC runs as matrix products the counter sees; its element-wise work is not counted.
        "gflops": counter.get_total_flops() / 1e9,
    }


def execute(
    study: Study,
    run: RunSpec,
    seed: int,
    num_classes: int,
    size: tuple[int, int],
    batches_per_epoch: int,
) -> dict:
    """Fit (or resume) and test one (configuration, seed); returns its result record."""
    folder = run_dir(study, run, seed)
    if (folder / RESULT).is_file():
        return json.loads((folder / RESULT).read_text())
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "commands.log"
    timing_path = folder / TIMING
    timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"fit_seconds": 0}
    if not timing.get("fit_done"):
        resume = latest_checkpoint(folder)
        cmd = fit_command(study, run, seed, resume)
        start, before = time.perf_counter(), timing["fit_seconds"]

        def record_time() -> None:
            # Written as the fit runs: a runner killed with its session loses 30 s at most.
            timing["fit_seconds"] = before + time.perf_counter() - start
            _write_json(timing_path, timing)

        _run(cmd, log, heartbeat=record_time)
        timing["fit_done"] = True
        timing["fit_command"] = shlex.join(fit_command(study, run, seed, None))
        _write_json(timing_path, timing)
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise RuntimeError(f"{folder}: fit finished but wrote no last.ckpt")
    cmd = test_command(study, run, seed, checkpoint)
    _run(cmd, log)
    test_rows = [r for r in _read_metrics_csv(folder / "test") if any("test/" in k for k in r)]
    if not test_rows:
        raise RuntimeError(f"{folder}: sdnseg test logged no test metrics")
    test = {k[len("test/") :]: v for k, v in test_rows[-1].items() if k.startswith("test/")}
    history = [
        {k: v for k, v in row.items() if k.startswith("val/") or k in ("epoch", "step")}
        for row in _read_metrics_csv(folder)
        if any(k.startswith("val/") for k in row)
    ]
    # The final validation is logged at the last step, so the logs tell how many steps ran.
    iterations = max((int(r["step"]) for r in history if "step" in r), default=0) + 1
    per_step, timed_from = logged_seconds_per_step(folder), "logged steps"
    if per_step is None:
        per_step, timed_from = timing["fit_seconds"] / iterations, "fit_seconds"
    result = {
        "name": run.name,
        "arch": run.arch,
        "overrides": run.overrides,
        "seed": seed,
        "test": test,
        "history": history,
        "fit_seconds": timing["fit_seconds"],
        "iterations": iterations,
        "epochs": iterations / batches_per_epoch,
        "seconds_per_epoch": per_step * batches_per_epoch,
        "seconds_per_epoch_from": timed_from,
        "fit_command": timing["fit_command"],
        "test_command": shlex.join(cmd),
        **_model_cost(run, num_classes, size),
    }
    _write_json(folder / RESULT, result)
    return result


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


def study_datamodule(study: Study):
    """The data module of the study's fit config (its test split is what ``sdnseg test`` scores)."""
    from sdnseg.engine.datamodule import SegmentationDataModule

    config = yaml.safe_load(Path(study.config).read_text()) or {}
    return SegmentationDataModule(**config.get("data", {}))


def study_shape(study: Study) -> tuple[int, tuple[int, int], int]:
    """Number of classes, evaluation size and batches per epoch, from the fit config."""
    dm = study_datamodule(study)
    size = dm.base_size or (dm.hparams.synthetic_size,) * 2
    return dm.num_classes, (int(size[0]), int(size[1])), len(dm.train_dataloader())


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sdnseg study", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study YAML file")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these (the report keeps all finished)"
    )
    parser.add_argument(
        "--report_only", action="store_true", help="rewrite the report, run nothing"
    )
    args = parser.parse_args(argv)
    from sdnseg.engine.study_report import write_report

    study = Study.load(args.study)
    num_classes, size, batches_per_epoch = study_shape(study)
    results = []
    for run, seed in schedule(study):
        done = (run_dir(study, run, seed) / RESULT).is_file()
        skipped = args.report_only or (args.only is not None and run.name not in args.only)
        if skipped and not done:
            continue
        print(f"[study] {run.name} seed {seed}: {'done' if done else 'running'}", flush=True)
        results.append(execute(study, run, seed, num_classes, size, batches_per_epoch))
        if not done:  # a restart does not redraw the report once per finished run
            write_report(study, results)
    write_report(study, results)
    print(f"[study] report: {study.results}.md", flush=True)
    return 0
