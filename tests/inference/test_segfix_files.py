"""``sdnseg segfix``: label PNGs refined by a SegFix checkpoint, matched with their images by key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sdnseg.engine.cli import main

from .test_segfix import segfix_checkpoint


def _shifted_left(labels: np.ndarray, pixels: int) -> np.ndarray:
    """What the hand-set network does: every pixel takes the label ``pixels`` to its right,
    the last columns the edge's."""
    columns = np.minimum(np.arange(labels.shape[1]) + pixels, labels.shape[1] - 1)
    return labels[:, columns]


@pytest.fixture
def folders(tmp_path):
    torch.save(segfix_checkpoint(), tmp_path / "segfix.ckpt")
    rng = np.random.default_rng(0)
    (tmp_path / "images" / "city").mkdir(parents=True)
    (tmp_path / "pred" / "city").mkdir(parents=True)
    labels = {}
    for key, suffix in (("a_leftImg8bit", ".png"), ("b", ".jpg")):
        image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
        Image.fromarray(image).save(tmp_path / "images" / "city" / f"{key}{suffix}")
        labels[key] = rng.integers(0, 6, (16, 20), dtype=np.uint8)
        Image.fromarray(labels[key]).save(tmp_path / "pred" / "city" / f"{key}_labels.png")
    return tmp_path, labels


def _args(root):
    return ["segfix", "--checkpoint", str(root / "segfix.ckpt"), "--pred", str(root / "pred")]


def test_segfix_refines_every_prediction_and_keeps_its_name(folders, capsys):
    root, labels = folders
    args = [*_args(root), "--images", str(root / "images"), "--output", str(root / "fixed")]
    assert main([*args, "--distance", "3"]) == 0
    changed = 0
    for key, before in labels.items():
        with Image.open(root / "fixed" / "city" / f"{key}_labels.png") as png:
            after = np.asarray(png)
        assert after.dtype == np.uint8
        np.testing.assert_array_equal(after, _shifted_left(before, 3))
        changed += int((after != before).sum())
    assert f"refined 2 label maps into {root / 'fixed'}: {changed} pixels changed" in (
        capsys.readouterr().out
    )


def test_segfix_keeps_labels_past_255(folders):
    root, _ = folders
    wide = np.arange(16 * 20, dtype=np.uint16).reshape(16, 20) + 300
    Image.fromarray(wide).save(root / "pred" / "city" / "b_labels.png")
    args = [*_args(root), "--images", str(root / "images"), "--output", str(root / "fixed")]
    assert main(args) == 0
    with Image.open(root / "fixed" / "city" / "b_labels.png") as png:
        np.testing.assert_array_equal(np.asarray(png), _shifted_left(wide, 2))


def test_segfix_errors_name_what_is_missing(folders, capsys):
    root, _ = folders
    (root / "images" / "city" / "b.jpg").unlink()
    args = [*_args(root), "--images", str(root / "images"), "--output", str(root / "fixed")]
    assert main(args) == 1
    assert "1 prediction(s) have no image" in capsys.readouterr().err
    assert not (root / "fixed").exists()  # checked before any map is written
    args = [*_args(root), "--images", str(root / "images"), "--output", str(root / "pred")]
    assert main(args) == 1
    assert "is the --pred folder" in capsys.readouterr().err
    args = [*_args(root), "--images", str(root / "nowhere"), "--output", str(root / "fixed")]
    assert main(args) == 1
    assert "image folder not found" in capsys.readouterr().err
