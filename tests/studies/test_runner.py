"""sdnseg study: the study file, the run order, and a two-configuration matrix on synthetic data,
skipped when finished."""

import json
from pathlib import Path

import pytest
import yaml

from sdnseg.studies import runner
from sdnseg.studies.runner import logged_seconds_per_step, main
from sdnseg.studies.spec import RunSpec, Study, schedule

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

    # A finished run is not run again.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "_run", fail)
    reports = []
    monkeypatch.setattr(runner, "write_report", lambda study, results: reports.append(results))
    assert main([str(path)]) == 0
    assert len(reports) == 1, "a restart redrew the report once per finished run"
    # --only selects what runs; the report still holds every finished run.
    assert main([str(path), "--only", "sdn"]) == 0
    assert {r["name"] for r in reports[-1]} == {"base", "sdn"}


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
    from sdnseg.studies.runner import _run

    log = tmp_path / "commands.log"
    beats = []
    _run(["sdnseg", "fit", "--help"], log, heartbeat=lambda: beats.append(1), every=0.01)
    assert len(beats) >= 2  # at least one while it ran, one at the end
    assert "$ sdnseg fit --help" in log.read_text()

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _run(["sdnseg", "fit", "--help"], log, heartbeat=fail, every=0.01)


def test_the_cli_study_command_is_the_runner():
    import importlib

    from sdnseg.engine.cli import COMMANDS

    module, function = COMMANDS["study"].split(":")
    assert getattr(importlib.import_module(module), function) is main
