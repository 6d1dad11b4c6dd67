"""``sdnseg visualize_sdn`` end to end on tiny checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdnseg.engine.cli import main
from sdnseg.engine.module import SegmentationModule
from sdnseg.engine.visualize import parse_points

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}


def _write_checkpoint(path: Path, arch: str, overrides: dict) -> Path:
    # What load_model reads from a fit checkpoint: the module's state dict ("net." keys) and its
    # metadata, written by the module itself; an untrained net suffices to draw the figures.
    torch.manual_seed(0)
    module = SegmentationModule(arch=arch, num_classes=3, model_overrides=overrides)
    torch.save({"state_dict": module.state_dict(), "sdnseg": module.metadata().to_dict()}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("visualize")
    image = np.zeros((40, 48, 3), np.uint8)
    image[:, 24:] = 200  # two regions
    image[::4, :12] = 90  # stripes: texture inside the left one
    Image.fromarray(image).save(folder / "image.png")
    sdn = {**TINY, "sdc_channels": 8, "guidance_channels": 8}
    return {
        "image": folder / "image.png",
        "sdn": _write_checkpoint(folder / "sdn.ckpt", "semfpn_r18_sdn", sdn),
        "baseline": _write_checkpoint(folder / "baseline.ckpt", "fcn_r18d8", TINY),
    }


def test_visualize_sdn_writes_both_figures(files, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--ckpt_path", str(files["sdn"]), "--image", str(files["image"])]
    assert main(["visualize_sdn", *args, "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("sdn_stages.png", "operator_response.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
        assert str(out / name) in printed
    assert "SDN stages (4)" in printed and "backbone's first conv" in printed
    assert all(f"  {p} (y=" in printed for p in ("A1", "A2", "B"))


def test_visualize_sdn_at_given_points(files, tmp_path, capsys):
    args = ["--ckpt_path", str(files["sdn"]), "--image", str(files["image"])]
    args += ["--points", "5,5;30,40", "--output_dir", str(tmp_path)]
    assert main(["visualize_sdn", *args]) == 0
    printed = capsys.readouterr().out
    assert "P1 (y=5, x=5," in printed and "P2 (y=30, x=40," in printed


@pytest.mark.parametrize(
    "ckpt, image, extra, match",
    [
        ("baseline", "image", [], "has no SDN neck"),
        ("missing", "image", [], "checkpoint not found"),
        ("sdn", "missing", [], "image file not found"),
        ("sdn", "sdn", [], "cannot read"),
        ("sdn", "image", ["--points", "1,2;3"], "--points takes"),
        ("sdn", "image", ["--points", "40,0"], "outside the 40×48 image"),
    ],
)
def test_visualize_sdn_errors_are_one_message(files, tmp_path, capsys, ckpt, image, extra, match):
    paths = {**files, "missing": tmp_path / "missing"}
    args = ["--ckpt_path", str(paths[ckpt]), "--image", str(paths[image]), *extra]
    assert main(["visualize_sdn", *args, "--output_dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written before the error


def test_parse_points():
    assert parse_points("1,2; 3,4;") == [(1, 2), (3, 4)]
    with pytest.raises(ValueError, match="y,x"):
        parse_points("1.5,2")
