"""DatasetInfo and the class protocol of DATASETS: descriptions without reading items."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from sdnseg.data import (
    ADE20K,
    DATASETS,
    CamVid,
    Cityscapes,
    DatasetInfo,
    SegmentationFolder,
    SyntheticShapes,
    default_palette,
)


def test_info_is_frozen_and_normalised() -> None:
    info = DatasetInfo(["a", "b"], [[1, 2, 3], (4, 5, 6)], crop_size=[8, 16])
    assert info.classes == ("a", "b") and info.palette == ((1, 2, 3), (4, 5, 6))
    assert info.crop_size == (8, 16) and info.num_classes == 2
    assert info.ignore_index == 255 and not info.uniform_size
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.classes = ("c",)  # type: ignore[misc]
    with pytest.raises(ValueError, match="got 2 classes but 1 palette colours"):
        DatasetInfo(("a", "b"), ((1, 2, 3),))


@pytest.mark.parametrize("cls", [CamVid, Cityscapes, ADE20K])
def test_fixed_tables_need_no_root(cls) -> None:
    info = cls.info()
    assert info.classes == cls.CLASSES and info.palette == tuple(cls.PALETTE)
    assert info.crop_size == (512, 512) and not info.uniform_size and cls.needs_root


def test_file_dataset_info_matches_the_dataset(tiny_camvid: Path, folder_root: Path) -> None:
    camvid = CamVid(tiny_camvid, "val")
    assert CamVid.info(tiny_camvid) == DatasetInfo(camvid.classes, tuple(camvid.palette))
    folder = SegmentationFolder(folder_root, "val")
    info = SegmentationFolder.info(folder_root)
    assert info.classes == folder.classes == ("background", "road", "car")
    assert list(info.palette) == folder.palette == default_palette(3)
    override = SegmentationFolder.info(folder_root, classes=["p", "q"])
    assert override.classes == ("p", "q") and list(override.palette) == default_palette(2)


def test_folder_info_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset root is not a directory: .*nowhere"):
        SegmentationFolder.info(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no classes.json or classes.txt"):
        SegmentationFolder.info(tmp_path)
    with pytest.raises(ValueError, match="needs classes= or a root"):
        SegmentationFolder.info()
    with pytest.raises(ValueError, match="no class names given"):
        SegmentationFolder.info(tmp_path, classes=[])


def test_synthetic_info_knows_its_classes_from_options() -> None:
    info = SyntheticShapes.info(size=(32, 48), num_classes=4, seed=3, num_images=2)
    dataset = SyntheticShapes(2, (32, 48), 4, seed=3)
    assert info.classes == dataset.classes and list(info.palette) == dataset.palette
    assert info.crop_size == (32, 48) == dataset.size and info.uniform_size
    assert not SyntheticShapes.needs_root
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticShapes.info(num_classes=65)
    with pytest.raises(ValueError, match="size"):
        SyntheticShapes.info(size=8)


def test_every_class_builds_with_the_uniform_constructor(tiny_camvid: Path) -> None:
    for cls in DATASETS.values():
        assert set(cls.options) <= {
            "classes",
            "palette",
            "num_images",
            "size",
            "num_classes",
            "seed",
        }
    synthetic = DATASETS["synthetic"].build(None, "val", num_images=2, size=16)
    assert len(synthetic) == 2 and synthetic[0]["path"] == "synthetic/val/000000"
    assert len(DATASETS["camvid"].build(tiny_camvid, "val")) == 2
    with pytest.raises(ValueError, match="CamVid needs a root folder"):
        CamVid.build(None)


def test_data_does_not_import_lightning() -> None:
    code = "import sys, sdnseg.data; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
