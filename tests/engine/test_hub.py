"""``sdnseg export --format hub`` from a training checkpoint, and the folder in load_model and
``sdnseg predict``."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from sdnseg.data.synthetic import SyntheticShapes
from sdnseg.engine.cli import main
from sdnseg.inference import load_model, read_checkpoint
from sdnseg.inference.hub import METRICS_KEY

from .tiny import QUIET


def test_export_hub_folder_predicts_as_the_checkpoint(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "last.ckpt"
    folder = tmp_path / "hub"
    assert main(["export", "--format", "hub", "--ckpt_path", str(ckpt), str(folder)]) == 0
    assert str(folder) in capsys.readouterr().out
    checkpoint, record = read_checkpoint(ckpt)
    logged = checkpoint[METRICS_KEY]
    assert "val/mIoU" in logged and all(isinstance(v, float) for v in logged.values())
    config = json.loads((folder / "config.json").read_text())
    assert config["metrics"] == logged and config["classes"] == list(record.data.classes)
    assert config["arch"] == "fcn_r18d8" and config["overrides"] == record.model_overrides
    card = (folder / "README.md").read_text()
    assert f"| val/mIoU | {logged['val/mIoU']:.4f} |" in card and "step 4" in card

    image, _ = SyntheticShapes(1, (30, 40), 6, split="hub").generate(0)
    from_checkpoint, from_folder = load_model(ckpt), load_model(folder)
    assert from_folder.classes == from_checkpoint.classes
    assert from_folder.palette == from_checkpoint.palette
    assert torch.equal(from_folder.predict_proba(image), from_checkpoint.predict_proba(image))

    # sdnseg predict takes the folder where it takes a checkpoint, with the same output.
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(image).save(photos / "a.png")
    outputs = {}
    for name, source in (("ckpt", ckpt), ("hub", folder)):
        out = tmp_path / f"out_{name}"
        args = ["predict", "--ckpt_path", str(source), *QUIET, "--predict_path", str(photos)]
        args += ["--runs_dir", str(tmp_path / "runs"), "--output_dir", str(out)]
        assert main(args) == 0
        outputs[name] = {
            kind: np.asarray(Image.open(out / f"a_{kind}.png")) for kind in ("labels", "color")
        }
    for kind in ("labels", "color"):
        assert np.array_equal(outputs["ckpt"][kind], outputs["hub"][kind]), kind


def test_export_hub_errors(tmp_path, capsys):
    assert main(["export", "--format", "hub", "--arch", "fcn_r18d8", str(tmp_path / "x")]) == 1
    assert "--ckpt_path" in capsys.readouterr().err
    missing = tmp_path / "missing.ckpt"
    assert main(["export", "--format", "hub", "--ckpt_path", str(missing), str(tmp_path)]) == 1
    assert "missing.ckpt" in capsys.readouterr().err
