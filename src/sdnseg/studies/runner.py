"""``sdnseg study STUDY.yaml``: run a matrix of ``sdnseg fit`` / ``sdnseg test`` runs and report it.

Every run is an ordinary ``sdnseg`` command, run in a subprocess, so each number in the report can
be reproduced by the command printed beside it. The runner can be killed at any moment and
restarted: a finished run (its committed record, :mod:`sdnseg.studies.records`, or the
``result.json`` of its run folder) is skipped, an interrupted one resumes from its newest
``last.ckpt`` (model, optimiser, schedule, data-loader position and random state), and the report
is rewritten from whatever has finished. Only the records are meant for git: in a fresh clone the
runner goes on from them.

The study file and the order of its runs are described in :mod:`sdnseg.studies.spec`; the tables
and plots are drawn by :mod:`sdnseg.studies.report`, which this module calls and which never
calls back.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdnseg.io import atomic_write
from sdnseg.studies.doc_blocks import refresh_doc
from sdnseg.studies.qualitative import qualitative, qualitative_labels
from sdnseg.studies.records import EVALUATION, RESULT, read_record, write_record
from sdnseg.studies.report import build_report, save_report
from sdnseg.studies.spec import (
    RunSpec,
    Study,
    best_checkpoint,
    latest_checkpoint,
    run_dir,
    schedule,
    study_datamodule,
    study_shape,
)

TIMING = "timing.json"


def _write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as JSON atomically: the heartbeat rewrites ``timing.json`` every 30 s
    and the runner may be killed at any moment."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")


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


def test_command(study: Study, run: RunSpec, seed: int, checkpoint: Path) -> list[str]:
    """The ``sdnseg test`` command scoring ``checkpoint`` at the study's scales and flip, with
    an evaluation run's post-processing."""
    folder = run_dir(study, run, seed)
    cmd = ["sdnseg", "test", "--config", study.config, "--ckpt_path", str(checkpoint)]
    cmd += ["--runs_dir", str(folder), "--name", "test", "--trainer.enable_progress_bar", "false"]
    # The evaluator's suite (Boundary IoU, trimap curve) of the prediction the row reports.
    cmd += ["--report", str(folder / "test" / "report"), "--report_top_k", "0"]
    cmd += ["--model.test_scales", json.dumps(study.test_scales)]
    cmd += ["--model.test_flip", str(study.test_flip).lower()]
    if run.postprocess is not None:
        cmd += ["--model.postprocess", run.postprocess]
    if run.segfix_run is not None:
        cmd += ["--model.segfix_checkpoint", str(segfix_checkpoint(study, run))]
    return [*cmd, *study.args, *run.args]


def tested_checkpoint(study: Study, run: RunSpec, seed: int) -> Path | None:
    """What an evaluation run tests: the checkpoint its ``test_of`` run tested at this seed,
    once that run has finished."""
    tested = study.run(run.test_of)
    folder = run_dir(study, tested, seed)
    return latest_checkpoint(folder) if _finished(study, tested, seed) else None


def command_output(run: RunSpec) -> Path | None:
    """The file a command run writes (its ``--output``), or None."""
    command = run.command or []
    return Path(command[command.index("--output") + 1]) if "--output" in command[:-1] else None


def _finished(study: Study, run: RunSpec, seed: int) -> bool:
    """Made, by its run folder or its record; a command only while its output is on this
    machine (an inverse-transformation net is too large for a record), so that a later session
    makes it again before the runs that read it."""
    output = command_output(run)
    if output is not None and not output.is_file():
        return False
    made = (run_dir(study, run, seed) / RESULT).is_file()
    return made or read_record(study, run, seed) is not None


def segfix_checkpoint(study: Study, run: RunSpec) -> Path | None:
    """The best checkpoint of the SegFix network ``run.segfix_run`` (its first seed), once
    that run has finished."""
    segfix = study.run(run.segfix_run)
    folder = run_dir(study, segfix, segfix.seeds[0])
    return best_checkpoint(folder) if _finished(study, segfix, segfix.seeds[0]) else None


def waiting_for(study: Study, run: RunSpec, seed: int) -> str | None:
    """Why ``run`` cannot start at ``seed`` yet (what it reads is not there), or None."""
    gone = "finished in an earlier session; its checkpoint is not on this machine"
    if run.test_of is not None and tested_checkpoint(study, run, seed) is None:
        if _finished(study, study.run(run.test_of), seed):
            return f"waits for the checkpoint of {run.test_of} seed {seed} ({gone})"
        return f"waits for {run.test_of} seed {seed} to finish (it tests that checkpoint)"
    if run.segfix_run is not None and segfix_checkpoint(study, run) is None:
        segfix = study.run(run.segfix_run)
        if _finished(study, segfix, segfix.seeds[0]):
            return f"waits for the best checkpoint of the SegFix network {run.segfix_run} ({gone})"
        return f"waits for the best checkpoint of the SegFix network {run.segfix_run}"
    return None


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
    """The rows of every ``version_*/metrics.csv`` under ``folder``, empty cells left out."""
    rows = []
    for path in sorted(folder.glob("version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    return rows


def _model_cost(run: RunSpec, num_classes: int, size: tuple[int, int]) -> dict[str, float]:
    """Parameters and forward GFLOPs of one configuration at the evaluation size."""
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
    """Make one (configuration, seed) by its kind, unless finished; returns its result record."""
    recorded = read_record(study, run, seed)
    if recorded is not None and _finished(study, run, seed):
        return recorded
    folder = run_dir(study, run, seed)
    if (folder / RESULT).is_file() and _finished(study, run, seed):  # before the record copy
        result = json.loads((folder / RESULT).read_text())
    else:
        folder.mkdir(parents=True, exist_ok=True)
        if run.kind == "command":
            result = _execute_command(run, seed, folder)
        elif run.kind == "test":
            result = _execute_evaluation(study, run, seed)
        else:
            result = _execute_fit(study, run, seed, num_classes, size, batches_per_epoch)
        _write_json(folder / RESULT, result)
    write_record(study, run, seed, folder, result, qualitative_labels(study, run, seed))
    return result


def _execute_command(run: RunSpec, seed: int, folder: Path) -> dict:
    cmd = ["sdnseg", *run.command]
    start = time.perf_counter()
    _run(cmd, folder / "commands.log")
    seconds = time.perf_counter() - start
    return {"name": run.name, "seed": seed, "command": shlex.join(cmd), "seconds": seconds}


def _test_metrics(study: Study, run: RunSpec, seed: int, checkpoint: Path) -> tuple[dict, str]:
    """Run ``sdnseg test`` of ``checkpoint``; its ``test/*`` metrics (an evaluation run's
    post-processed ones, without their suffix) and the command."""
    folder = run_dir(study, run, seed)
    cmd = test_command(study, run, seed, checkpoint)
    _run(cmd, folder / "commands.log")
    test_rows = [r for r in _read_metrics_csv(folder / "test") if any("test/" in k for k in r)]
    if not test_rows:
        raise RuntimeError(f"{folder}: sdnseg test logged no test metrics")
    test = {k[len("test/") :]: v for k, v in test_rows[-1].items() if k.startswith("test/")}
    if run.postprocess is not None:
        # The plain metrics repeat the tested run's; keep the post-processed ones, as its row.
        suffix = f"_{run.postprocess}"
        test = {k[: -len(suffix)]: v for k, v in test.items() if k.endswith(suffix)}
    suite = folder / "test" / "report" / EVALUATION
    if suite.is_file():  # Boundary IoU and the trimap curve, beside the logged metrics
        # The report scores the most refined variant: multi-scale + flip when the study sets it.
        ms = "_ms" if study.test_scales != [1.0] or study.test_flip else ""
        headline = json.loads(suite.read_text())["headline"]
        test.update({k + ms: v for k, v in headline.items() if k + ms not in test})
    return test, shlex.join(cmd)


def _execute_evaluation(study: Study, run: RunSpec, seed: int) -> dict:
    """Test the ``test_of`` run's checkpoint with post-processing; its training record (time,
    cost, history, fit command) is that run's."""
    checkpoint = tested_checkpoint(study, run, seed)
    if checkpoint is None:
        raise RuntimeError(f"{run.name} seed {seed}: {waiting_for(study, run, seed)}")
    tested = json.loads((run_dir(study, study.run(run.test_of), seed) / RESULT).read_text())
    start = time.perf_counter()
    test, cmd = _test_metrics(study, run, seed, checkpoint)
    return {
        **tested,
        "name": run.name,
        "test_of": run.test_of,
        "test": test,
        "test_seconds": time.perf_counter() - start,
        "test_command": cmd,
    }


def _execute_fit(
    study: Study,
    run: RunSpec,
    seed: int,
    num_classes: int,
    size: tuple[int, int],
    batches_per_epoch: int,
) -> dict:
    """Fit (or resume) and test one (configuration, seed)."""
    folder = run_dir(study, run, seed)
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
    test, test_cmd = _test_metrics(study, run, seed, checkpoint)
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
        "test_command": test_cmd,
        **_model_cost(run, num_classes, size),
    }
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


def write_report(study: Study, results: list[dict]) -> None:
    """``<results>.json``, ``<results>.md`` and the figures, from the finished runs; then the
    study's ``doc``, if it names one, quotes the new report."""
    dm = study_datamodule(study)
    figures = qualitative(study, results, dm)
    report = build_report(study, results, dm.classes, figures)
    save_report(report)
    if study.doc is not None:
        refresh_doc(study.doc, report.markdown_text, strict=False)


def main(argv: list[str]) -> int:
    """``sdnseg study``: make the scheduled runs not yet finished, redrawing the report after each."""
    parser = argparse.ArgumentParser(prog="sdnseg study", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study YAML file")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these (the report keeps all finished)"
    )
    parser.add_argument(
        "--report_only", action="store_true", help="rewrite the report, run nothing"
    )
    parser.add_argument(
        "--max_runs",
        type=int,
        default=None,
        help="make at most this many runs, then report and stop (what a session has time for)",
    )
    args = parser.parse_args(argv)
    study = Study.load(args.study)
    num_classes, size, batches_per_epoch = study_shape(study)
    results, made = [], 0
    for run, seed in schedule(study):
        done = _finished(study, run, seed)
        # A re-test whose checkpoints are here is not counted: in the next session they are gone.
        budget_spent = args.max_runs is not None and made >= args.max_runs and run.kind != "test"
        skipped = (
            args.report_only
            or budget_spent
            or (args.only is not None and run.name not in args.only)
        )
        if skipped and not done:
            continue
        waiting = None if done else waiting_for(study, run, seed)
        if waiting is not None:
            print(f"[study] {run.name} seed {seed}: skipped, {waiting}", flush=True)
            continue
        print(f"[study] {run.name} seed {seed}: {'done' if done else 'running'}", flush=True)
        results.append(execute(study, run, seed, num_classes, size, batches_per_epoch))
        if not done:  # a restart does not redraw the report once per finished run
            made += run.kind != "test"
            write_report(study, results)
    if not results:  # say so, rather than name a report that was not written
        print(f"[study] no finished runs of {args.study}: {study.results}.md left as it is")
        return 0
    write_report(study, results)
    print(f"[study] report: {study.results}.md", flush=True)
    return 0
