"""benchmarks/train_speed.py on a tiny synthetic study: it runs and its table adds up."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from tests.studies.test_runner import TINY_PAIR

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_speed_times_every_configuration_against_its_pair(tmp_path):
    fit = {
        "trainer": {"deterministic": True},
        "model": {"lr": 0.01, "optimizer": "adamw", "weight_decay": 0.01},
        "data": {
            "name": "synthetic",
            "synthetic_size": 32,
            "synthetic_num_train": 6,
            "synthetic_num_val": 2,
            "synthetic_num_classes": 3,
            "batch_size": 2,
            "crop_size": [32, 48],
        },
    }
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(fit))
    study = {
        "config": str(tmp_path / "fit.yaml"),
        "output_dir": str(tmp_path / "runs"),
        "results": str(tmp_path / "results" / "study"),
        "runs": TINY_PAIR,
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    train_speed = _load("train_speed")
    argv = ["--study", str(tmp_path / "study.yaml"), "--results_dir", str(tmp_path)]
    assert train_speed.main([*argv, "--rounds", "2", "--steps", "1", "--warmup", "1"]) == 0
    result = json.loads((tmp_path / "train_speed_study.json").read_text())
    assert result["batches_per_epoch"] == 3  # 6 images, batch 2
    base, sdn = result["rows"]
    assert (base["name"], sdn["name"], sdn["pair"]) == ("base", "sdn", "base")
    for row in result["rows"]:
        assert len(row["times_s"]) == 2 and 0 < row["min_s"] <= row["median_s"]
    table = (tmp_path / "train_speed_study.md").read_text()
    assert f"| {sdn['median_s'] / base['median_s']:.3f} |" in table
    assert f"| {base['median_s'] * 3:.0f} |" in table


_GPU = {"gpu": "G", "sm_count": 1, "torch": "t", "triton": "tr", "cuda": "c", "autotune": True}


def _speed_row(shape: tuple, precision: str, method: str, fwd_ms: float) -> dict:
    """One sdc_speed_cuda result row, as ``measure`` returns it."""
    timings = {"fwd_ms": fwd_ms, "fwd_bwd_ms": 3 * fwd_ms, "fwd_peak_mib": 1.0, "saved_mib": 0.0}
    sizes = dict(zip(("N", "Ci", "Co", "H", "W"), shape, strict=True))
    return {**sizes, "precision": precision, "method": method, **timings}


def test_sdc_speed_cuda_merge_replaces_only_the_precisions_measured_now():
    bench = _load("sdc_speed_cuda")

    def row(precision, method, ms):
        return _speed_row((2, 8, 8, 4, 4), precision, method, ms)

    def env(date):
        return {**_GPU, "date": date}

    earlier = {
        "environments": {"bf16": env("day 1"), "fp32": env("day 1")},
        "iters": 20,
        "note": "kept",
        "rows": [row("bf16", "triton", 1.0), row("fp32", "triton", 9.0)],
    }
    merged = bench.merge_payload(earlier, [row("fp32", "triton", 5.0)], {"fp32": env("day 2")})
    assert merged["rows"] == [row("fp32", "triton", 5.0), row("bf16", "triton", 1.0)]
    assert merged["environments"] == {"fp32": env("day 2"), "bf16": env("day 1")}
    assert merged["note"] == "kept"
    # A precision not measured before is added in the script's order (fp32, tf32, bf16).
    merged = bench.merge_payload(earlier, [row("tf32", "triton", 3.0)], {"tf32": env("day 2")})
    assert [r["precision"] for r in merged["rows"]] == ["fp32", "tf32", "bf16"]
    assert list(merged["environments"]) == ["fp32", "tf32", "bf16"]
    markdown = bench.markdown(merged["rows"], merged["environments"], 20, merged["note"])
    assert "- tf32: G (1 SMs)" in markdown and "day 2" in markdown and "kept" in markdown
    with pytest.raises(ValueError, match="no 'environments'"):
        bench.merge_payload({"environment": {}, "rows": []}, [], {"fp32": env("day 2")})


def test_sdc_speed_cuda_merge_rewrites_the_results_after_every_shape(tmp_path, monkeypatch):
    import argparse

    bench = _load("sdc_speed_cuda")

    def measure(shape, precision, methods, iters, warmup):
        return [_speed_row(shape, precision, "triton", 1.0)]

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "sdc_functions", lambda: {"triton": None})
    monkeypatch.setattr(bench, "measure", measure)
    monkeypatch.setattr(bench, "environment", lambda: {**_GPU, "date": "now"})
    earlier_row = {**measure(bench.SHAPES[0], "bf16", None, 0, 0)[0], "fwd_ms": 7.0}
    earlier = {"environments": {"bf16": {**_GPU, "date": "then"}}, "iters": 20, "note": "n"}
    (tmp_path / "sdc_speed_cuda.json").write_text(json.dumps({**earlier, "rows": [earlier_row]}))
    args = argparse.Namespace(
        methods=["triton"],
        max_shapes=2,
        merge=True,
        iters=20,
        warmup=0,
        precisions=["fp32"],
    )
    bench.run_benchmark(args)
    written = json.loads((tmp_path / "sdc_speed_cuda.json").read_text())
    assert [(r["precision"], r["Ci"]) for r in written["rows"]] == [
        ("fp32", bench.SHAPES[0][1]),
        ("fp32", bench.SHAPES[1][1]),
        ("bf16", bench.SHAPES[0][1]),
    ]
    assert written["rows"][-1]["fwd_ms"] == 7.0
    assert {p: e["date"] for p, e in written["environments"].items()} == {
        "fp32": "now",
        "bf16": "then",
    }
    assert written["environments"]["fp32"]["pytorch_path"] == "three_gemm"
    markdown = (tmp_path / "sdc_speed_cuda.md").read_text()
    assert "- bf16: G (1 SMs)" in markdown and "PyTorch path: three GEMMs" in markdown
