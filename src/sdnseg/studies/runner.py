"""``sdnseg study STUDY.yaml``: run a matrix of ``sdnseg fit`` / ``sdnseg test`` runs and report it.

Every run is a sequence of ordinary ``sdnseg`` commands (:mod:`sdnseg.studies.commands`), run in
a subprocess, so each number in the report can be reproduced by the command printed beside it.
The runner can be killed at any moment and restarted: a finished run (its committed record,
:mod:`sdnseg.studies.records`, or the ``result.json`` of its run folder) is skipped, an
interrupted one resumes from its newest ``last.ckpt`` (model, optimiser, schedule, data-loader
position and random state), and the report is rewritten from whatever has finished. Only the
records are meant for git: in a fresh clone the runner goes on from them.

What a session's machine does not keep, a re-test makes again when its turn comes: a DenseCRF
re-test needs its tested run's checkpoint, a SegFix re-test the tested run's recorded label maps
(kept from now on; an older record has none) and the SegFix network's best checkpoint. A run
made again replaces its record, which keeps the test metrics it replaced (``previous_test``);
each counts against ``--max_runs``.

The study file and the order of its runs are described in :mod:`sdnseg.studies.spec`; the tables
and plots are drawn by :mod:`sdnseg.studies.report`, which this module calls and which never
calls back.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Any

from sdnseg.io import atomic_write
from sdnseg.studies.commands import (
    evaluate_command,
    fit_command,
    logged_seconds_per_step,
    read_metrics_csv,
    run_command,
    segfix_command,
    split_folders,
    suite_metrics,
    test_command,
)
from sdnseg.studies.doc_blocks import refresh_doc
from sdnseg.studies.qualitative import qualitative, qualitative_labels
from sdnseg.studies.records import (
    EVALUATION,
    RESULT,
    read_record,
    recorded_predictions,
    write_record,
)
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


def keeps_predictions(study: Study, run: RunSpec) -> bool:
    """Whether a SegFix row re-tests ``run``: then its test writes every label map it scores,
    and its record keeps them."""
    return any(r.test_of == run.name and r.postprocess == "segfix" for r in study.runs)


def tested_checkpoint(study: Study, run: RunSpec, seed: int) -> Path | None:
    """What a DenseCRF re-test tests: the checkpoint its ``test_of`` run tested at this seed,
    while that run's folder is on this machine."""
    tested = study.run(run.test_of)
    folder = run_dir(study, tested, seed)
    return latest_checkpoint(folder) if _finished(study, tested, seed) else None


def segfix_checkpoint(study: Study, run: RunSpec) -> Path | None:
    """The best checkpoint of the SegFix network ``run.segfix_run`` (its first seed), while its
    folder is on this machine."""
    segfix = study.run(run.segfix_run)
    folder = run_dir(study, segfix, segfix.seeds[0])
    return best_checkpoint(folder) if _finished(study, segfix, segfix.seeds[0]) else None


def waiting_for(study: Study, run: RunSpec, seed: int) -> str | None:
    """Why ``run`` cannot start at ``seed`` yet (a run it reads has not finished), or None."""
    if run.test_of is not None and not _finished(study, study.run(run.test_of), seed):
        return f"waits for {run.test_of} seed {seed} to finish (it tests that run)"
    if run.segfix_run is not None:
        segfix = study.run(run.segfix_run)
        if not _finished(study, segfix, segfix.seeds[0]):
            return f"waits for the SegFix network {run.segfix_run} to finish"
    return None


def to_make_again(study: Study, run: RunSpec, seed: int) -> list[tuple[RunSpec, int, str]]:
    """The finished runs a re-test reads whose outputs are not here, each (run, seed, why)."""
    if run.test_of is None or waiting_for(study, run, seed) is not None:
        return []
    tested = study.run(run.test_of)
    again = []
    if run.postprocess != "segfix" and tested_checkpoint(study, run, seed) is None:
        again.append((tested, seed, "its checkpoint is not on this machine"))
    if run.postprocess == "segfix":
        if recorded_predictions(study, tested, seed) is None:
            again.append((tested, seed, "its record keeps no label maps"))
        if segfix_checkpoint(study, run) is None:
            segfix = study.run(run.segfix_run)
            again.append((segfix, segfix.seeds[0], "its best checkpoint is not on this machine"))
    return again


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
    again: bool = False,
) -> dict:
    """Make one (configuration, seed) by its kind, unless finished (``again``: make it even so,
    its record replaced); returns its result record."""
    recorded = read_record(study, run, seed)
    if recorded is not None and _finished(study, run, seed) and not again:
        return recorded
    folder = run_dir(study, run, seed)
    if (folder / RESULT).is_file() and _finished(study, run, seed) and not again:
        result = json.loads((folder / RESULT).read_text())  # made before the record copy
    else:
        folder.mkdir(parents=True, exist_ok=True)
        if again and run.kind == "fit" and latest_checkpoint(folder) is None:
            # Its checkpoint is gone: fit from the start, not "fit done" by an old timing file.
            (folder / TIMING).unlink(missing_ok=True)
        if run.kind == "command":
            result = _execute_command(run, seed, folder)
        elif run.kind == "test":
            result = _execute_evaluation(study, run, seed)
        else:
            result = _execute_fit(study, run, seed, num_classes, size, batches_per_epoch)
        if again and recorded is not None and "test" in recorded:
            result["previous_test"] = recorded["test"]
        _write_json(folder / RESULT, result)
    write_record(study, run, seed, folder, result, qualitative_labels(study, run, seed))
    return result


def _execute_command(run: RunSpec, seed: int, folder: Path) -> dict:
    cmd = ["sdnseg", *run.command]
    start = time.perf_counter()
    run_command(cmd, folder / "commands.log")
    seconds = time.perf_counter() - start
    return {"name": run.name, "seed": seed, "command": shlex.join(cmd), "seconds": seconds}


def _suite_suffix(study: Study) -> str:
    # The suite scores the most refined variant: multi-scale + flip when the study sets them.
    return "_ms" if study.test_scales != [1.0] or study.test_flip else ""


def _test_metrics(study: Study, run: RunSpec, seed: int, checkpoint: Path) -> tuple[dict, str]:
    """Run ``sdnseg test`` of ``checkpoint``; its ``test/*`` metrics (a DenseCRF re-test's
    post-processed ones, without their suffix) and the command."""
    folder = run_dir(study, run, seed)
    segfix = segfix_checkpoint(study, run) if run.segfix_run is not None else None
    cmd = test_command(study, run, seed, checkpoint, segfix, keeps_predictions(study, run))
    run_command(cmd, folder / "commands.log")
    test_rows = [r for r in read_metrics_csv(folder / "test") if any("test/" in k for k in r)]
    if not test_rows:
        raise RuntimeError(f"{folder}: sdnseg test logged no test metrics")
    test = {k[len("test/") :]: v for k, v in test_rows[-1].items() if k.startswith("test/")}
    if run.postprocess is not None:
        # The plain metrics repeat the tested run's; keep the post-processed ones, as its row.
        suffix = f"_{run.postprocess}"
        test = {k[: -len(suffix)]: v for k, v in test.items() if k.endswith(suffix)}
    suite = folder / "test" / "report" / EVALUATION
    if suite.is_file():  # Boundary IoU and the trimap curve, beside the logged metrics
        headline = json.loads(suite.read_text())["headline"]
        ms = _suite_suffix(study)
        test.update({k + ms: v for k, v in headline.items() if k + ms not in test})
    return test, shlex.join(cmd)


def _segfix_metrics(study: Study, run: RunSpec, seed: int) -> tuple[dict, str]:
    """``sdnseg segfix`` of the tested run's recorded label maps, then ``sdnseg evaluate`` of
    the refined ones: the SegFix row's metrics, without the tested checkpoint."""
    folder = run_dir(study, run, seed)
    pred = recorded_predictions(study, study.run(run.test_of), seed)
    segfix = segfix_checkpoint(study, run)
    if pred is None or segfix is None:
        raise RuntimeError(f"{run.name} seed {seed}: {to_make_again(study, run, seed)}")
    images, gt = split_folders(study)
    refined, report = folder / "test" / "refined", folder / "test" / "report"
    commands = [
        segfix_command(segfix, pred, images, refined),
        evaluate_command(study, refined, gt, report),
    ]
    for cmd in commands:
        run_command(cmd, folder / "commands.log")
    ms = _suite_suffix(study)
    test = {k + ms: v for k, v in suite_metrics(report / EVALUATION).items()}
    return test, " && ".join(shlex.join(cmd) for cmd in commands)


def _execute_evaluation(study: Study, run: RunSpec, seed: int) -> dict:
    """Re-test the ``test_of`` run with post-processing; its training record (time, cost,
    history, fit command) is that run's."""
    tested_run = study.run(run.test_of)
    tested = read_record(study, tested_run, seed)
    if tested is None:
        tested = json.loads((run_dir(study, tested_run, seed) / RESULT).read_text())
    tested.pop("previous_test", None)
    start = time.perf_counter()
    if run.postprocess == "segfix":
        test, cmd = _segfix_metrics(study, run, seed)
    else:
        checkpoint = tested_checkpoint(study, run, seed)
        if checkpoint is None:
            raise RuntimeError(f"{run.name} seed {seed}: {to_make_again(study, run, seed)}")
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

        run_command(cmd, log, heartbeat=record_time)
        timing["fit_done"] = True
        timing["fit_command"] = shlex.join(fit_command(study, run, seed, None))
        _write_json(timing_path, timing)
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise RuntimeError(f"{folder}: fit finished but wrote no last.ckpt")
    test, test_cmd = _test_metrics(study, run, seed, checkpoint)
    history = [
        {k: v for k, v in row.items() if k.startswith("val/") or k in ("epoch", "step")}
        for row in read_metrics_csv(folder)
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
    shape = (num_classes, size, batches_per_epoch)
    results: dict[tuple[str, int], dict] = {}
    made = 0
    budget = float("inf") if args.max_runs is None else args.max_runs
    for run, seed in schedule(study):
        done = _finished(study, run, seed)
        # A re-test of what is here costs no fit: it is not counted.
        budget_spent = made >= budget and run.kind != "test"
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
        again = [] if done else to_make_again(study, run, seed)
        if made + len(again) > budget:
            print(
                f"[study] {run.name} seed {seed}: skipped, {len(again)} run(s) it reads must be "
                f"made again and --max_runs has {budget - made} left",
                flush=True,
            )
            continue
        for other, other_seed, why in again:
            print(f"[study] {other.name} seed {other_seed}: made again, {why}", flush=True)
            results[other.name, other_seed] = execute(study, other, other_seed, *shape, again=True)
            made += 1
        print(f"[study] {run.name} seed {seed}: {'done' if done else 'running'}", flush=True)
        results[run.name, seed] = execute(study, run, seed, *shape)
        if not done:  # a restart does not redraw the report once per finished run
            made += run.kind != "test"
            write_report(study, list(results.values()))
    if not results:  # say so, rather than name a report that was not written
        print(f"[study] no finished runs of {args.study}: {study.results}.md left as it is")
        return 0
    write_report(study, list(results.values()))
    print(f"[study] report: {study.results}.md", flush=True)
    return 0
