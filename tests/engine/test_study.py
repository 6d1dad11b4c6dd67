"""sdnseg study: a two-configuration matrix on synthetic data, skipped when finished."""

import json

import pytest
import yaml

from sdnseg.engine import study as study_module
from sdnseg.engine.study import Study, main

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


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
        "runs": [
            {"name": "base", "arch": "fcn_r18d8", "overrides": TINY, "seeds": [0]},
            {
                "name": "sdn",
                "arch": "fcn_r18d8_sdn",
                "overrides": {**TINY, "sdc_channels": 8, "guidance_channels": 8},
                "seeds": [0],
                "pair": "base",
            },
        ],
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
    (pair,) = report["paired"]
    base, sdn = (report["summary"][n]["mIoU"]["mean"] for n in ("base", "sdn"))
    assert abs(pair["mIoU"] - (sdn - base)) < 1e-9
    markdown = (tmp_path / "results" / "study.md").read_text()
    assert "sdnseg fit" in markdown and "sdnseg test" in markdown
    assert (tmp_path / "results" / "study_bars.png").is_file()

    # A finished run is not run again.
    def fail(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(study_module, "_run", fail)
    assert main([str(path)]) == 0


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
