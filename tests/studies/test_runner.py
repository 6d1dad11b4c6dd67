"""sdnseg study: the study file, the run order, and a two-configuration matrix on synthetic data,
skipped when finished."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from sdnseg.studies import runner
from sdnseg.studies.commands import logged_seconds_per_step
from sdnseg.studies.records import record_dir
from sdnseg.studies.runner import main
from sdnseg.studies.spec import RunSpec, Study, schedule

ROOT = Path(__file__).resolve().parents[2]
TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}
# A baseline and its +SDN twin, small enough for a few CPU steps; tests/test_benchmarks.py too.
TINY_PAIR = [
    {"name": "base", "arch": "fcn_r18d8", "overrides": TINY, "seeds": [0]},
    {
        "name": "sdn",
        "arch": "fcn_r18d8_sdn",
        "overrides": {**TINY, "sdc_channels": 8, "guidance_channels": 8},
        "seeds": [0],
        "pair": "base",
    },
]


def _write_study(tmp_path):
    fit = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 2,
            "val_check_interval": 2,
            "check_val_every_n_epoch": None,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "data": {
            "name": "synthetic",
            "synthetic_size": 32,
            "synthetic_num_train": 4,
            "synthetic_num_val": 2,
            "batch_size": 2,
        },
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(fit))
    spec = {
        "config": str(tmp_path / "fit.yaml"),
        "output_dir": str(tmp_path / "runs"),
        "results": str(tmp_path / "results" / "study"),
        "test_scales": [0.75, 1.0],
        "test_flip": True,
        "qualitative": {"variants": ["sdn"], "images": [1, 0, 7]},  # 7: past the end, left out
        "runs": TINY_PAIR,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_study_runs_reports_and_skips_finished_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write_study(tmp_path)
    assert main([str(path)]) == 0
    report = json.loads((tmp_path / "results" / "study.json").read_text())
    assert set(report["summary"]) == {"base", "sdn"}
    for entry in report["summary"].values():
        assert 0 <= entry["mIoU"]["mean"] <= 1 and 0 <= entry["mIoU_ms"]["mean"] <= 1
        assert 0 <= entry["BF@1px"]["mean"] <= 1 and entry["params"] > 0
    (run,) = [r for r in report["runs"] if r["name"] == "base"]
    assert run["iterations"] == 2 and run["epochs"] == 1  # 4 images, batch 2: 2 batches per epoch
    per_step = logged_seconds_per_step(tmp_path / "runs" / "base" / "seed0")
    assert per_step is not None and 0 < per_step < run["fit_seconds"]
    assert run["seconds_per_epoch"] == pytest.approx(per_step * 2)
    assert run["seconds_per_epoch_from"] == "logged steps"
    (pair,) = report["paired"]
    base, sdn = (report["summary"][n]["mIoU"]["mean"] for n in ("base", "sdn"))
    assert abs(pair["mIoU"] - (sdn - base)) < 1e-9
    summary = report["paired_summary"]["sdn"]
    assert summary["seeds"] == [0] and summary["mIoU"]["wins"] == int(sdn > base)
    assert abs(summary["mIoU"]["mean"] - pair["mIoU"]) < 1e-12
    markdown = (tmp_path / "results" / "study.md").read_text()
    assert "sdnseg fit" in markdown and "sdnseg test" in markdown
    assert "## Per-class IoU" in markdown and "| configuration | class0 | class1 |" in markdown
    assert (tmp_path / "results" / "study_bars.png").is_file()
    assert (tmp_path / "results" / "study_qualitative_sdn.png").is_file()
    assert "study_qualitative_sdn.png" in markdown
    # The suite of sdnseg test --report beside the logged metrics; it scores the multi-scale +
    # flip prediction of this study, so its names carry that variant's suffix.
    assert 0 <= run["test"]["mBIoU_ms"] <= 1 and "trimap_mIoU@1px_ms" in run["test"]
    assert "mBIoU" not in run["test"]

    # Each finished run left its record for git: result, logs, metrics, suite, qualitative maps.
    record = tmp_path / "results" / "study_runs" / "base" / "seed0"
    recorded = json.loads((record / "result.json").read_text())
    assert recorded["test"] == run["test"] and recorded["fit_command"] == run["fit_command"]
    assert "sdnseg fit" in (record / "commands.log").read_text()
    assert {p.name for p in (record / "metrics").iterdir()} >= {
        "version_0__metrics.csv",
        "test__version_0__metrics.csv",
    }
    assert "trimap" in json.loads((record / "evaluation.json").read_text())
    assert sorted(p.name for p in (record / "qualitative").iterdir()) == ["0.png", "1.png"]
    figure = tmp_path / "results" / "study_qualitative_sdn.png"
    drawn = figure.read_bytes()

    # A fresh clone has the records only: nothing runs again, the report (figure included,
    # from the recorded label maps) is drawn from them.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "run_command", fail)
    shutil.rmtree(tmp_path / "runs")
    figure.unlink()
    assert main([str(path)]) == 0
    assert figure.read_bytes() == drawn
    again = json.loads((tmp_path / "results" / "study.json").read_text())
    assert again["summary"] == report["summary"]

    reports = []
    monkeypatch.setattr(runner, "write_report", lambda study, results: reports.append(results))
    assert main([str(path)]) == 0
    assert len(reports) == 1, "a restart redrew the report once per finished run"
    # --only selects what runs; the report still holds every finished run.
    assert main([str(path), "--only", "sdn"]) == 0
    assert {r["name"] for r in reports[-1]} == {"base", "sdn"}


def test_max_runs_stops_after_that_many_new_runs(tmp_path, monkeypatch, capsys):
    path = _write_study(tmp_path)
    monkeypatch.setattr(runner, "study_shape", lambda study: (3, (8, 8), 1))
    made = []
    monkeypatch.setattr(runner, "execute", lambda study, run, seed, *a: made.append(run.name) or {})
    monkeypatch.setattr(runner, "write_report", lambda study, results: None)
    assert main([str(path), "--max_runs", "1"]) == 0
    assert made == ["base"]  # the first of the schedule only; sdn waits for the next session


def test_report_only_without_finished_runs_leaves_the_report_and_says_so(
    tmp_path, monkeypatch, capsys
):
    path = _write_study(tmp_path)
    monkeypatch.setattr(runner, "study_shape", lambda study: (3, (8, 8), 1))
    reports = []
    monkeypatch.setattr(runner, "write_report", lambda study, results: reports.append(results))
    assert main([str(path), "--report_only"]) == 0
    assert reports == []
    assert "no finished runs" in capsys.readouterr().out


def test_study_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    run = {"name": "a", "arch": "fcn_r18d8", "seeds": [0], "pair": "zzz"}
    bad.write_text(
        yaml.safe_dump({"config": "x", "output_dir": "o", "results": "r", "runs": [run]})
    )
    with pytest.raises(ValueError, match="unknown run 'zzz'"):
        Study.load(bad)
    bad.write_text(yaml.safe_dump({"config": "x", "runs": []}))
    with pytest.raises(ValueError, match="lacks"):
        Study.load(bad)
    with pytest.raises(FileNotFoundError, match="study file not found"):
        Study.load(tmp_path / "missing.yaml")


def _order(runs):
    study = Study("fit.yaml", Path("runs"), Path("results"), runs)
    return [(run.name, seed) for run, seed in schedule(study)]


def test_schedule_alternates_a_pair_seed_by_seed():
    base = RunSpec("base", "fcn_r18d8", [0, 1, 2])
    sdn = RunSpec("sdn", "fcn_r18d8_sdn", [0, 1, 2], pair="base")
    conv = RunSpec("conv", "fcn_r18d8_sdn", [0, 1], pair="base")
    other = RunSpec("other", "semfpn_r18", [1])
    assert _order([base, sdn, conv, other]) == [
        ("base", 0), ("sdn", 0), ("conv", 0), ("base", 1), ("sdn", 1), ("conv", 1),
        ("base", 2), ("sdn", 2), ("other", 1),
    ]  # fmt: skip


def test_schedule_keeps_a_chained_pair_together():
    runs = [
        RunSpec("a", "fcn_r18d8", [0, 1]),
        RunSpec("x", "semfpn_r18", [0]),
        RunSpec("b", "fcn_r18d8_sdn", [0, 1], pair="a"),
        RunSpec("c", "fcn_r18d8_sdn", [0, 1], pair="b"),
    ]
    assert _order(runs) == [("a", 0), ("a", 1), ("x", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1)]


def test_schedule_runs_ablations_of_an_earlier_baseline_seed_by_seed():
    # Ablations listed after another block: all of seed 0 before any seed 1, so a study cut off
    # half-way still has a whole ablation table at one seed.
    runs = [
        RunSpec("base", "fcn_r18d8", [0]),
        RunSpec("other", "semfpn_r18", [0]),
        RunSpec("conv", "fcn_r18d8_sdn", [0, 1], pair="base"),
        RunSpec("cdc", "fcn_r18d8_sdn", [0, 1], pair="base"),
        RunSpec("k5", "fcn_r18d8_sdn", [1], pair="base"),
        RunSpec("alone", "semfpn_r18_sdn", [0, 1], pair="other"),
    ]
    assert _order(runs) == [
        ("base", 0), ("other", 0), ("conv", 0), ("cdc", 0), ("conv", 1), ("cdc", 1), ("k5", 1),
        ("alone", 0), ("alone", 1),
    ]  # fmt: skip


def test_study_qualitative_must_name_a_paired_run(tmp_path):
    path = _write_study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["qualitative"] = {"variants": ["base"]}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="qualitative variant 'base' is not a run with a pair"):
        Study.load(path)


def test_logged_seconds_per_step_times_each_segment_of_a_resumed_fit(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    # A fit logs steps 10..50 in 80 s and is killed; its resume logs 60..100 in 40 s. The 820 s
    # between the two (the kill, the next session's start) are not training time.
    # A resume that only ran its final validation logs one step: no rate, left out.
    segments = {
        "version_0": [(10, 100.0), (50, 180.0)],
        "version_1": [(60, 1000.0), (100, 1040.0)],
        "version_2": [(100, 2000.0), (100, 2030.0)],
    }
    for version, points in segments.items():
        with SummaryWriter(tmp_path / version) as writer:
            for step, wall in points:
                writer.add_scalar("train/loss", 1.0, step, walltime=wall)
    (tmp_path / "version_3").mkdir()  # a fit killed before it logged anything
    assert logged_seconds_per_step(tmp_path) == pytest.approx(120 / 80)
    assert logged_seconds_per_step(tmp_path / "missing") is None


def test_run_calls_the_heartbeat_while_running_and_stops_the_command_when_it_raises(tmp_path):
    from sdnseg.studies.commands import run_command

    log = tmp_path / "commands.log"
    beats = []
    run_command(["sdnseg", "fit", "--help"], log, heartbeat=lambda: beats.append(1), every=0.01)
    assert len(beats) >= 2  # at least one while it ran, one at the end
    assert "$ sdnseg fit --help" in log.read_text()

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_command(["sdnseg", "fit", "--help"], log, heartbeat=fail, every=0.01)


def test_the_cli_study_command_is_the_runner():
    import importlib

    from sdnseg.engine.cli import COMMANDS

    module, function = COMMANDS["study"].split(":")
    assert getattr(importlib.import_module(module), function) is main


def test_schedule_makes_every_seed_of_a_tier_before_the_next():
    # Without tiers the ablations would join the pair's group: base 0, sdn 0, conv 0, base 1...
    runs = [
        RunSpec("base", "fcn_r18d8", [0, 1], tier=1),
        RunSpec("sdn", "fcn_r18d8_sdn", [0, 1], pair="base", tier=1),
        RunSpec("conv", "fcn_r18d8_sdn", [0, 1], pair="base", tier=2),
        RunSpec("sc", "fcn_r18d8_sdn", [0, 1], pair="base", tier=2),
    ]
    assert _order(runs) == [
        ("base", 0), ("sdn", 0), ("base", 1), ("sdn", 1),
        ("conv", 0), ("sc", 0), ("conv", 1), ("sc", 1),
    ]  # fmt: skip
    assert _order([replace(r, tier=0) for r in runs])[:3] == [("base", 0), ("sdn", 0), ("conv", 0)]


def test_the_pretrained_study_is_in_priority_order_with_table_3c():
    study = Study.load(ROOT / "configs" / "studies" / "camvid_pretrained.yaml")
    order = schedule(study)
    # The DenseCRF re-tests follow the fit whose checkpoint they test (it is gone in the next
    # session); everything else in tier order.
    crf_tests = [(r, s) for r, s in order if r.postprocess == "crf"]
    for run, seed in crf_tests:
        before = order[order.index((run, seed)) - 1]
        assert (before[0].name, before[1]) == (run.test_of, seed)
    order = [item for item in order if item not in crf_tests]
    tiers = [run.tier for run, _ in order]
    assert tiers == sorted(tiers) and set(tiers) == {1, 2, 3, 4, 5}
    # Tier 1 first, whole: both SemanticFPN configurations at all three seeds.
    assert {(r.name, s) for r, s in order[:6]} == {
        (n, s) for n in ("semfpn_efflite2", "semfpn_efflite2_sdn") for s in (0, 1, 2)
    }
    assert len(crf_tests) == 6
    factorial = {r.name: r.overrides for r, _ in order if r.tier == 2}
    assert factorial["semfpn_sdn_sc"] == {"operator": "sc"}
    assert factorial["semfpn_sdn_ones"] == {"similarity": "ones"}
    assert factorial["semfpn_sdn_conv"] == {"operator": "conv"}
    crf = study.run("semfpn_efflite2_sdn_crf")
    assert crf.kind == "test" and crf.arch == "semfpn_efflite2_sdn" and crf.seeds == [0, 1, 2]
    assert study.run("semfpn_efflite2_segfix").segfix_run == "segfix_efflite2"
    assert study.run("inverse_net").kind == "command"
    inverse_net = study.run("inverse_net").command[-1]
    for name in ("semfpn_efflite2_inverseform", "semfpn_efflite2_sdn_inverseform"):
        assert inverse_net in study.run(name).args[1]  # the InverseForm loss reads that file


def _evaluation_study(tmp_path):
    runs = [
        {"name": "base", "arch": "fcn_r18d8", "seeds": [0, 1]},
        {"name": "segfix", "arch": "segfix_r18", "seeds": [0]},
        {"name": "base_crf", "test_of": "base", "postprocess": "crf", "pair": "base"},
        {"name": "base_segfix", "test_of": "base", "postprocess": "segfix", "segfix_run": "segfix"},
        {"name": "net", "command": ["train_inverseform", "--output", "net.pt"], "seeds": [0]},
    ]
    spec = {
        "config": "fit.yaml",
        "output_dir": str(tmp_path / "runs"),
        "results": str(tmp_path / "r"),
        "runs": runs,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return Study.load(path)


def _finish(study, name, seed, checkpoint="last.ckpt", result=None):
    folder = runner.run_dir(study, study.run(name), seed)
    (folder / "version_0" / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "version_0" / "checkpoints" / checkpoint).write_text("")
    (folder / runner.RESULT).write_text(json.dumps(result or {"name": name, "seed": seed}))
    return folder / "version_0" / "checkpoints" / checkpoint


def _record(study, name, seed, predictions=False):
    """A record of ``name`` at ``seed``: made in an earlier session (no run folder here)."""
    record = record_dir(study, study.run(name), seed)
    record.mkdir(parents=True, exist_ok=True)
    (record / runner.RESULT).write_text(json.dumps({"name": name, "seed": seed, "test": {}}))
    if predictions:
        (record / "predictions").mkdir()
        (record / "predictions" / "a_labels.png").write_bytes(b"")
    return record


def test_an_evaluation_run_tests_its_base_checkpoint_once_it_exists(tmp_path):
    study = _evaluation_study(tmp_path)
    crf, segfix = study.run("base_crf"), study.run("base_segfix")
    assert crf.arch == "fcn_r18d8" and crf.seeds == [0, 1] and crf.kind == "test"
    assert (
        runner.waiting_for(study, crf, 0) == "waits for base seed 0 to finish (it tests that run)"
    )
    checkpoint = _finish(study, "base", 0)
    assert runner.waiting_for(study, crf, 0) is None and runner.to_make_again(study, crf, 0) == []
    cmd = runner.test_command(study, crf, 0, runner.tested_checkpoint(study, crf, 0))
    assert cmd[:6] == ["sdnseg", "test", "--config", "fit.yaml", "--ckpt_path", str(checkpoint)]
    assert cmd[cmd.index("--model.postprocess") + 1] == "crf"
    assert cmd[cmd.index("--runs_dir") + 1] == str(tmp_path / "runs" / "base_crf" / "seed0")
    assert "--model.segfix_checkpoint" not in cmd and "--report_predictions" not in cmd
    # A SegFix row re-tests base: base's own test writes the label maps it scores.
    assert runner.keeps_predictions(study, study.run("base"))
    assert not runner.keeps_predictions(study, study.run("segfix"))
    # SegFix waits for the SegFix network to finish.
    assert "SegFix network segfix" in runner.waiting_for(study, segfix, 0)


def test_a_re_test_makes_again_what_an_earlier_session_took_with_it(tmp_path):
    study = _evaluation_study(tmp_path)
    crf, segfix = study.run("base_crf"), study.run("base_segfix")
    _record(study, "base", 1)  # finished in an earlier session: no checkpoint, no label maps
    _record(study, "segfix", 0)
    assert runner.waiting_for(study, crf, 1) is None
    again = runner.to_make_again(study, crf, 1)
    assert [(r.name, s, why) for r, s, why in again] == [
        ("base", 1, "its checkpoint is not on this machine")
    ]
    again = runner.to_make_again(study, segfix, 1)
    assert [(r.name, s) for r, s, _ in again] == [("base", 1), ("segfix", 0)]
    assert "keeps no label maps" in again[0][2] and "best checkpoint" in again[1][2]
    # The label maps in the record and the SegFix network's best checkpoint here: nothing.
    shutil.rmtree(record_dir(study, study.run("base"), 1))
    _record(study, "base", 1, predictions=True)
    best = _finish(study, "segfix", 0, checkpoint="best-step=9-0.5000.ckpt")
    assert runner.to_make_again(study, segfix, 1) == []
    assert runner.segfix_checkpoint(study, segfix) == best


def test_a_segfix_re_test_refines_the_recorded_maps_and_evaluates_them(tmp_path, monkeypatch):
    study = _evaluation_study(tmp_path)
    base = {"name": "base", "seed": 0, "fit_command": "sdnseg fit x", "params": 7, "test": {}}
    record = _record(study, "base", 0, predictions=True)
    (record / runner.RESULT).write_text(json.dumps(base))
    best = _finish(study, "segfix", 0, checkpoint="best-step=9-0.5000.ckpt")
    monkeypatch.setattr(runner, "split_folders", lambda study: (Path("img"), Path("gt")))
    monkeypatch.setattr(runner, "evaluate_command", lambda study, p, g, o: ["sdnseg", "e", str(o)])
    calls = []

    def fake(cmd, log, heartbeat=None):
        calls.append(cmd)
        if cmd[1] == "e":
            suite = {"headline": {"mIoU": 0.5}, "per_class": {"Road": {"IoU": 0.9, "Acc": 1}}}
            Path(cmd[2]).mkdir(parents=True)
            (Path(cmd[2]) / "evaluation.json").write_text(json.dumps(suite))

    monkeypatch.setattr(runner, "run_command", fake)
    result = runner.execute(study, study.run("base_segfix"), 0, 3, (8, 8), 1)
    folder = runner.run_dir(study, study.run("base_segfix"), 0)
    assert calls[0] == [
        "sdnseg", "segfix", "--checkpoint", str(best), "--pred", str(record / "predictions"),
        "--images", "img", "--output", str(folder / "test" / "refined"),
    ]  # fmt: skip
    assert calls[1] == ["sdnseg", "e", str(folder / "test" / "report")]
    assert result["test"] == {"mIoU": 0.5, "IoU/Road": 0.9}
    assert result["test_of"] == "base" and result["params"] == 7
    assert result["test_command"].startswith("sdnseg segfix --checkpoint")
    copied = json.loads(
        (record_dir(study, study.run("base_segfix"), 0) / "evaluation.json").read_text()
    )
    assert copied["headline"] == {"mIoU": 0.5}


def test_main_makes_again_what_a_re_test_reads_within_the_budget(tmp_path, monkeypatch, capsys):
    study = _evaluation_study(tmp_path)
    _record(study, "base", 0)
    _record(study, "base", 1)
    monkeypatch.setattr(runner, "study_shape", lambda study: (3, (8, 8), 1))
    monkeypatch.setattr(runner, "write_report", lambda study, results: None)
    made = []

    def fake_execute(study, run, seed, *args, again=False):
        # As execute does: a finished run is read back, not made.
        if again or not runner._finished(study, run, seed):
            made.append((run.name, seed, again))
            if run.kind == "fit":
                _finish(study, run.name, seed)
        return {}

    monkeypatch.setattr(runner, "execute", fake_execute)
    args = [str(tmp_path / "study.yaml"), "--only", "base_crf", "--max_runs"]
    assert main([*args, "0"]) == 0
    assert made == [] and "must be made again and --max_runs has 0 left" in capsys.readouterr().out
    assert main([*args, "1"]) == 0
    # base seed 0 fitted again (its checkpoint is gone), then re-tested; seed 1 is over budget.
    assert made == [("base", 0, True), ("base_crf", 0, False)]
    out = capsys.readouterr().out
    assert "base seed 0: made again, its checkpoint is not on this machine" in out
    assert "base_crf seed 1: skipped, 1 run(s) it reads must be made again" in out


def test_a_run_made_again_keeps_the_metrics_it_replaces(tmp_path, monkeypatch):
    study = _evaluation_study(tmp_path)
    record = _record(study, "base", 0)
    (record / runner.RESULT).write_text(json.dumps({"name": "base", "test": {"mIoU": 0.4}}))
    monkeypatch.setattr(
        runner, "_execute_fit", lambda *a: {"name": "base", "seed": 0, "test": {"mIoU": 0.41}}
    )
    result = runner.execute(study, study.run("base"), 0, 3, (8, 8), 1, again=True)
    assert result["test"] == {"mIoU": 0.41} and result["previous_test"] == {"mIoU": 0.4}
    assert json.loads((record / runner.RESULT).read_text()) == result


@pytest.mark.parametrize("checkpoint_here", [False, True])
def test_a_fit_made_again_starts_over_only_where_its_checkpoint_is_gone(
    tmp_path, monkeypatch, checkpoint_here
):
    study = _evaluation_study(tmp_path)
    folder = runner.run_dir(study, study.run("base"), 0)
    if checkpoint_here:  # e.g. a SegFix row needs its label maps: re-test, no new fit
        _finish(study, "base", 0)
    else:
        folder.mkdir(parents=True)
    (folder / runner.TIMING).write_text(json.dumps({"fit_seconds": 5, "fit_done": True}))
    seen = []

    def fake_fit(study, run, seed, *args):
        seen.append((folder / runner.TIMING).is_file())
        return {"name": "base", "seed": 0, "test": {}}

    monkeypatch.setattr(runner, "_execute_fit", fake_fit)
    runner.execute(study, study.run("base"), 0, 3, (8, 8), 1, again=True)
    assert seen == [checkpoint_here]


def test_an_evaluation_run_keeps_the_post_processed_metrics_and_the_base_training(
    tmp_path, monkeypatch
):
    study = _evaluation_study(tmp_path)
    base = {"name": "base", "seed": 0, "fit_command": "sdnseg fit x", "params": 7, "history": []}
    _finish(study, "base", 0, result=base)

    def fake_test(cmd, log, heartbeat=None):
        folder = Path(cmd[cmd.index("--runs_dir") + 1]) / "test" / "version_0"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(
            "test/mIoU,test/mIoU_crf,test/BF@1px_crf\n0.5,0.6,0.7\n"
        )

    monkeypatch.setattr(runner, "run_command", fake_test)
    result = runner.execute(study, study.run("base_crf"), 0, 3, (8, 8), 1)
    assert result["test"] == {"mIoU": 0.6, "BF@1px": 0.7}
    assert result["name"] == "base_crf" and result["test_of"] == "base"
    assert result["fit_command"] == "sdnseg fit x" and result["params"] == 7
    assert "--model.postprocess crf" in result["test_command"]
    saved = runner.run_dir(study, study.run("base_crf"), 0) / runner.RESULT
    assert json.loads(saved.read_text()) == result


def test_a_command_run_runs_once_and_records_its_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the command's --output net.pt is relative
    study = _evaluation_study(tmp_path)
    calls = []

    def fake_command(cmd, log, heartbeat=None):
        calls.append(cmd)
        Path("net.pt").write_text("weights")

    monkeypatch.setattr(runner, "run_command", fake_command)
    result = runner.execute(study, study.run("net"), 0, 3, (8, 8), 1)
    assert calls == [["sdnseg", "train_inverseform", "--output", "net.pt"]]
    assert result["command"] == "sdnseg train_inverseform --output net.pt" and "test" not in result
    runner.execute(study, study.run("net"), 0, 3, (8, 8), 1)
    assert len(calls) == 1  # finished: not run again


def test_main_skips_an_evaluation_run_with_a_clear_message(tmp_path, monkeypatch, capsys):
    _evaluation_study(tmp_path)
    monkeypatch.setattr(runner, "study_shape", lambda study: (3, (8, 8), 1))
    monkeypatch.setattr(runner, "write_report", lambda study, results: None)
    monkeypatch.setattr(runner, "execute", lambda *a: {})
    assert main([str(tmp_path / "study.yaml"), "--only", "base_crf", "base_segfix"]) == 0
    out = capsys.readouterr().out
    assert "base_crf seed 0: skipped, waits for base seed 0 to finish" in out
    assert "base_segfix seed 1: skipped, waits for base seed 1 to finish" in out


@pytest.mark.parametrize(
    ("run", "match"),
    [
        ({"name": "e", "test_of": "zzz", "postprocess": "crf"}, "not a run listed before it"),
        ({"name": "e", "test_of": "a"}, "test_of and postprocess go together"),
        ({"name": "e", "test_of": "a", "postprocess": "tta"}, "postprocess must be one of"),
        ({"name": "e", "test_of": "a", "postprocess": "segfix"}, "segfix_run go together"),
        ({"name": "e", "arch": "fcn_r18d8", "seeds": [0], "tier": -1}, "listed by tier"),
        ({"name": "e", "command": ["x"], "seeds": [0], "pair": "a"}, "a command has no"),
    ],
)
def test_study_file_errors_of_the_new_kinds(tmp_path, run, match):
    runs = [{"name": "a", "arch": "fcn_r18d8", "seeds": [0]}, run]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"config": "x", "output_dir": "o", "results": "r", "runs": runs}))
    with pytest.raises(ValueError, match=match):
        Study.load(bad)


def test_max_runs_still_makes_the_re_test_of_a_checkpoint_made_here(tmp_path, monkeypatch):
    _evaluation_study(tmp_path)
    monkeypatch.setattr(runner, "study_shape", lambda study: (3, (8, 8), 1))
    monkeypatch.setattr(runner, "write_report", lambda study, results: None)
    made = []

    def fake_execute(study, run, seed, *args, again=False):
        made.append((run.name, seed))
        if run.kind == "fit":
            _finish(study, run.name, seed)
        return {}

    monkeypatch.setattr(runner, "execute", fake_execute)
    assert main([str(tmp_path / "study.yaml"), "--max_runs", "1"]) == 0
    # One fit, then the DenseCRF re-test of its checkpoint, not counted against the budget.
    assert made == [("base", 0), ("base_crf", 0)]


def test_a_re_test_seed_must_be_one_its_tested_run_has(tmp_path):
    runs = [
        {"name": "base", "arch": "fcn_r18d8", "seeds": [0]},
        {"name": "crf", "test_of": "base", "postprocess": "crf", "seeds": [0, 1]},
    ]
    bad = tmp_path / "study.yaml"
    bad.write_text(yaml.safe_dump({"config": "x", "output_dir": "o", "results": "r", "runs": runs}))
    with pytest.raises(ValueError, match=r"seeds \[0, 1\] must be among those of 'base'"):
        Study.load(bad)


def test_a_command_is_made_again_where_its_output_is_gone(tmp_path, monkeypatch):
    study = _evaluation_study(tmp_path)
    net = replace(study.run("net"), command=["train_inverseform", "--output", str(tmp_path / "n")])
    calls = []
    monkeypatch.setattr(runner, "run_command", lambda cmd, log, heartbeat=None: calls.append(cmd))
    runner.execute(study, net, 0, 3, (8, 8), 1)
    (tmp_path / "n").write_text("weights")
    runner.execute(study, net, 0, 3, (8, 8), 1)
    assert len(calls) == 1  # finished while its output is here
    (tmp_path / "n").unlink()  # a new session's machine: the record stays, the file is gone
    assert not runner._finished(study, net, 0)
    runner.execute(study, net, 0, 3, (8, 8), 1)
    assert len(calls) == 2


def test_a_record_keeps_labels_past_255_as_16_bit(tmp_path):
    from sdnseg.studies.records import read_qualitative, write_record

    study = _evaluation_study(tmp_path)
    run = study.run("base")
    labels = {0: np.array([[0, 149], [255, 300]]), 3: np.zeros((2, 2), dtype=np.int64)}
    write_record(study, run, 0, tmp_path / "nothing", {"name": "base"}, labels)
    back = read_qualitative(study, run, 0, [0, 3])
    assert np.array_equal(back[0], labels[0]) and np.array_equal(back[1], labels[3])
    assert read_qualitative(study, run, 0, [0, 1]) is None  # image 1 was not recorded
