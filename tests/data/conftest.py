"""Tiny datasets written into tmp_path in the real on-disk layouts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from tests.data.layouts import blocky_mask, random_image, write_folder, write_image

REAL_CAMVID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "camvid"


@pytest.fixture
def tiny_camvid(tmp_path: Path) -> Path:
    """SegNet layout: train/ + trainannot/ (3 items), val/ + valannot/ (2), 11 = void."""
    rng = np.random.default_rng(0)
    root = tmp_path / "camvid"
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            name = f"0001TP_{i:06d}.png"
            write_image(root / split / name, random_image(rng, 24, 32))
            write_image(root / f"{split}annot" / name, blocky_mask(rng, 24, 32, list(range(12))))
    return root


@pytest.fixture
def camvid_root(tiny_camvid: Path) -> Path:
    """The real CamVid beside the repository when present, else the tiny fixture."""
    return REAL_CAMVID if (REAL_CAMVID / "val").is_dir() else tiny_camvid


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    """leftImg8bit/{split}/{city}/*_leftImg8bit.png with gtFine labelIds (and one labelTrainIds)."""
    rng = np.random.default_rng(1)
    root = tmp_path / "cityscapes"
    items = [
        ("train", "aachen", "aachen_000000_000019"),
        ("train", "aachen", "aachen_000001_000019"),
        ("train", "bochum", "bochum_000000_000313"),
        ("val", "frankfurt", "frankfurt_000000_000294"),
    ]
    for split, city, stem in items:
        write_image(
            root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            random_image(rng, 16, 32),
        )
        label_ids = np.arange(16 * 32).reshape(16, 32) % 34  # every id 0..33
        gt = root / "gtFine" / split / city
        write_image(gt / f"{stem}_gtFine_labelIds.png", label_ids)
        write_image(gt / f"{stem}_gtFine_color.png", random_image(rng, 16, 32))  # ignored
    # Ready train ids for one image: preferred over its label ids.
    stem = "bochum_000000_000313"
    write_image(
        root / "gtFine" / "train" / "bochum" / f"{stem}_gtFine_labelTrainIds.png",
        blocky_mask(rng, 16, 32, [0, 5, 18, 255]),
    )
    return root


@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    """Folder holding ADEChallengeData2016/{images,annotations}/{training,validation}."""
    rng = np.random.default_rng(2)
    root = tmp_path / "ade"
    base = root / "ADEChallengeData2016"
    for folder, prefix, count in (("training", "ADE_train", 2), ("validation", "ADE_val", 1)):
        for i in range(1, count + 1):
            name = f"{prefix}_{i:08d}"
            write_image(base / "images" / folder / f"{name}.jpg", random_image(rng, 20, 28))
            mask = blocky_mask(rng, 20, 28, [0, 1, 75, 150], block=4)
            write_image(base / "annotations" / folder / f"{name}.png", mask)
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """images/{split}/*.jpg|png + masks/{split}/*.png + classes.txt (3 classes), varied sizes."""
    return write_folder(tmp_path / "folder")


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The file-writing helpers above, for tests (test modules do not import conftest)."""
    return SimpleNamespace(
        write_image=write_image,
        random_image=random_image,
        blocky_mask=blocky_mask,
        real_camvid=REAL_CAMVID,
    )


@pytest.fixture
def write_classes_json():
    def write(root: Path, data: object) -> Path:
        path = root / "classes.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return write
