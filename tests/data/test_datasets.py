"""Datasets on tiny fixtures in the real layouts, and on the real CamVid when it is present."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from sdnseg.data import (
    ADE20K,
    DATASETS,
    CamVid,
    Cityscapes,
    SegmentationFolder,
    SyntheticShapes,
    build_dataset,
    default_palette,
    read_mask,
)

# The repository's parent holds shared/ (as in CI): the real CamVid when it is there.
REAL_CAMVID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "camvid"


def check_item(item: dict, num_classes: int) -> None:
    image, mask = item["image"], item["mask"]
    assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
    assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.int64
    assert image.ndim == 3 and image.shape[0] == 3 and mask.shape == image.shape[-2:]
    valid = (mask >= 0) & (mask < num_classes) | (mask == 255)
    assert bool(valid.all())
    assert isinstance(item["path"], str) and Path(item["path"]).is_file()


def check_metadata(dataset, num_classes: int) -> None:
    assert dataset.num_classes == num_classes == len(dataset.classes) == len(dataset.palette)
    assert dataset.ignore_index == 255
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in dataset.palette)


# --- CamVid ------------------------------------------------------------------------------------


def test_camvid_items_and_void_label(camvid_root: Path) -> None:
    dataset = CamVid(camvid_root, "val")
    check_metadata(dataset, 11)
    assert dataset.classes[0] == "Sky" and dataset.classes[-1] == "Bicyclist"
    if camvid_root == REAL_CAMVID:
        assert len(dataset) == 101
    item = dataset[0]
    check_item(item, 11)
    raw = torch.from_numpy(read_mask(dataset.samples[0][1]))
    expected = torch.where(raw == 11, 255, raw)
    assert torch.equal(item["mask"].as_subclass(torch.Tensor), expected)


@pytest.mark.skipif(not (REAL_CAMVID / "train").is_dir(), reason="real CamVid not beside the repo")
def test_real_camvid_layout() -> None:
    train = CamVid(REAL_CAMVID, "train")
    assert len(train) == 367
    assert train[0]["image"].shape == (3, 360, 480)
    with pytest.raises(FileNotFoundError, match=r"splits found .*\['train', 'val'\]"):
        CamVid(REAL_CAMVID, "test")


def test_camvid_any_split_name_and_verify(tiny_camvid: Path) -> None:
    shutil.copytree(tiny_camvid / "val", tiny_camvid / "night")
    shutil.copytree(tiny_camvid / "valannot", tiny_camvid / "nightannot")
    dataset = CamVid(tiny_camvid, "night")
    assert len(dataset) == 2
    dataset.verify()


def test_camvid_transforms_receive_the_item(tiny_camvid: Path) -> None:
    seen = []

    def transforms(item: dict) -> dict:
        seen.append(sorted(item))
        return {**item, "extra": 1}

    item = CamVid(tiny_camvid, "train", transforms=transforms)[1]
    assert seen == [["image", "mask", "path"]] and item["extra"] == 1


def test_missing_root(tmp_path: Path) -> None:
    for cls in (CamVid, Cityscapes, ADE20K, SegmentationFolder):
        with pytest.raises(FileNotFoundError, match="nowhere"):
            cls(tmp_path / "nowhere", "train")


def test_camvid_missing_split_lists_splits(tiny_camvid: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"'test'.*splits found.*\['train', 'val'\]"):
        CamVid(tiny_camvid, "test")


def test_empty_split(tiny_camvid: Path) -> None:
    (tiny_camvid / "empty").mkdir()
    (tiny_camvid / "emptyannot").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found in .*empty"):
        CamVid(tiny_camvid, "empty")


def test_image_without_mask(tiny_camvid: Path) -> None:
    (tiny_camvid / "trainannot" / "0001TP_000001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) without a mask.*0001TP_000001"):
        CamVid(tiny_camvid, "train")


def test_mask_without_image(tiny_camvid: Path) -> None:
    (tiny_camvid / "train" / "0001TP_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask\(s\) without an image.*0001TP_000002"):
        CamVid(tiny_camvid, "train")


def test_mask_size_differs(tiny_camvid: Path, helpers) -> None:
    mask_path = tiny_camvid / "trainannot" / "0001TP_000001.png"
    helpers.write_image(mask_path, np.zeros((20, 32), dtype=np.uint8))
    dataset = CamVid(tiny_camvid, "train")  # sizes are checked on load
    dataset[0]
    with pytest.raises(ValueError, match=r"0001TP_000001.png is 32x20 .* is 32x24"):
        dataset[1]
    with pytest.raises(ValueError, match="0001TP_000001"):
        dataset.verify()


def test_class_ids_out_of_range(tiny_camvid: Path, helpers) -> None:
    mask_path = tiny_camvid / "trainannot" / "0001TP_000000.png"
    helpers.write_image(mask_path, np.full((24, 32), 12, dtype=np.uint8))
    with pytest.raises(
        ValueError, match=r"0001TP_000000.png has class ids \[12\] outside \[0, 11\)"
    ):
        CamVid(tiny_camvid, "train")[0]


def test_unreadable_image(tiny_camvid: Path) -> None:
    (tiny_camvid / "train" / "0001TP_000000.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*0001TP_000000.png"):
        CamVid(tiny_camvid, "train")[0]


def test_unreadable_and_colour_masks(tiny_camvid: Path, helpers) -> None:
    (tiny_camvid / "trainannot" / "0001TP_000000.png").write_bytes(b"\x89PNG broken")
    colour = helpers.random_image(np.random.default_rng(0), 24, 32)
    helpers.write_image(tiny_camvid / "trainannot" / "0001TP_000001.png", colour)
    dataset = CamVid(tiny_camvid, "train")
    with pytest.raises(ValueError, match=r"cannot read mask .*0001TP_000000.png"):
        dataset[0]
    with pytest.raises(ValueError, match=r"0001TP_000001.png has PIL mode 'RGB'"):
        dataset[1]


# --- Cityscapes --------------------------------------------------------------------------------

LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


def test_cityscapes_label_ids_mapping(cityscapes_root: Path) -> None:
    dataset = Cityscapes(cityscapes_root, "train")
    check_metadata(dataset, 19)
    assert len(dataset) == 3
    assert dataset.classes[0] == "road" and dataset.palette[0] == (128, 64, 128)
    assert dataset.classes[18] == "bicycle" and dataset.palette[18] == (119, 11, 32)
    item = dataset[0]
    check_item(item, 19)
    assert item["path"].endswith("leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png")
    label_ids = torch.arange(16 * 32).reshape(16, 32) % 34
    expected = torch.full_like(label_ids, 255)
    for label_id, train_id in LABEL_TO_TRAIN.items():
        expected[label_ids == label_id] = train_id
    assert torch.equal(item["mask"].as_subclass(torch.Tensor), expected)


def test_cityscapes_prefers_train_ids(cityscapes_root: Path) -> None:
    dataset = Cityscapes(cityscapes_root, "train")
    image_path, mask_path = dataset.samples[2]
    assert mask_path.name == "bochum_000000_000313_gtFine_labelTrainIds.png"
    mask = dataset[2]["mask"]
    assert torch.equal(mask.as_subclass(torch.Tensor), torch.from_numpy(read_mask(mask_path)))
    assert set(mask.unique().tolist()) <= {0, 5, 18, 255}


def test_cityscapes_errors(cityscapes_root: Path, helpers) -> None:
    with pytest.raises(FileNotFoundError, match=r"splits found .*\['train', 'val'\]"):
        Cityscapes(cityscapes_root, "test")
    gt = cityscapes_root / "gtFine" / "val" / "frankfurt"
    helpers.write_image(gt / "frankfurt_000001_000001_gtFine_labelIds.png", np.zeros((16, 32)))
    with pytest.raises(FileNotFoundError, match="without an image.*frankfurt_000001_000001"):
        Cityscapes(cityscapes_root, "val")
    bad = cityscapes_root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelTrainIds.png"
    helpers.write_image(bad, np.full((16, 32), 19))
    with pytest.raises(ValueError, match=r"labelTrainIds.png has class ids \[19\]"):
        Cityscapes(cityscapes_root, "train")[2]


# --- ADE20K ------------------------------------------------------------------------------------


def test_ade20k_reduce_zero_label(ade_root: Path) -> None:
    dataset = ADE20K(ade_root, "train")
    check_metadata(dataset, 150)
    assert dataset.classes[:3] == ("wall", "building", "sky") and dataset.classes[-1] == "flag"
    assert dataset.classes[7] == "bed" and dataset.palette[-1] == (92, 0, 255)
    assert len(dataset) == 2
    item = dataset[0]
    check_item(item, 150)
    assert item["path"].endswith("ADEChallengeData2016/images/training/ADE_train_00000001.jpg")
    raw = torch.from_numpy(read_mask(dataset.samples[0][1]))
    mask = item["mask"].as_subclass(torch.Tensor)
    for stored, train_id in ((0, 255), (1, 0), (75, 74), (150, 149)):
        assert bool((mask[raw == stored] == train_id).all())
    assert set(raw.unique().tolist()) == {0, 1, 75, 150}


def test_ade20k_root_forms_and_splits(ade_root: Path) -> None:
    direct = ADE20K(ade_root / "ADEChallengeData2016", "val")
    assert len(direct) == 1 and direct[0]["path"].endswith("ADE_val_00000001.jpg")
    assert len(ADE20K(ade_root, "validation")) == 1
    with pytest.raises(FileNotFoundError, match=r"splits found .*\['training', 'validation'\]"):
        ADE20K(ade_root, "test")


def test_ade20k_label_out_of_range(ade_root: Path, helpers) -> None:
    path = ade_root / "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png"
    helpers.write_image(path, np.full((20, 28), 151))
    with pytest.raises(ValueError, match=r"ADE_val_00000001.png has labels \[151\] outside 0..150"):
        ADE20K(ade_root, "val")[0]


# --- SegmentationFolder ------------------------------------------------------------------------


def test_folder_classes_txt(folder_root: Path) -> None:
    dataset = SegmentationFolder(folder_root, "train")
    assert dataset.classes == ("background", "road", "car")
    assert dataset.palette == default_palette(3)
    check_metadata(dataset, 3)
    assert len(dataset) == 4
    assert {Path(p).suffix for p, _ in dataset.samples} == {".jpg", ".png"}
    for i in range(len(dataset)):
        check_item(dataset[i], 3)
    val = SegmentationFolder(folder_root, "val")
    assert val[1]["image"].shape == (3, 30, 20)


def test_folder_classes_json_and_override(folder_root: Path, write_classes_json) -> None:
    write_classes_json(
        folder_root,
        [
            {"name": "bg", "color": [1, 2, 3]},
            {"name": "a", "color": [4, 5, 6]},
            {"name": "b", "color": [7, 8, 9]},
        ],
    )
    dataset = SegmentationFolder(folder_root, "train")
    assert dataset.classes == ("bg", "a", "b") and dataset.palette[2] == (7, 8, 9)
    write_classes_json(folder_root, {"classes": ["x", "y", "z", "w"]})
    assert SegmentationFolder(folder_root, "train").classes == ("x", "y", "z", "w")
    override = SegmentationFolder(folder_root, "train", classes=["p", "q", "r"])
    assert override.classes == ("p", "q", "r") and len(override.palette) == 3
    write_classes_json(folder_root, {"names": []})
    with pytest.raises(ValueError, match="classes.json must be"):
        SegmentationFolder(folder_root, "train")


def test_folder_errors(folder_root: Path) -> None:
    (folder_root / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no classes.json or classes.txt"):
        SegmentationFolder(folder_root, "train")
    with pytest.raises(FileNotFoundError, match=r"splits found .*\['train', 'val'\]"):
        SegmentationFolder(folder_root, "test", classes=["a", "b"])
    dataset = SegmentationFolder(folder_root, "train", classes=["a", "b"])
    with pytest.raises(ValueError, match=r"has class ids \[2\] outside \[0, 2\) and the ignore"):
        dataset.verify()


# --- build_dataset -----------------------------------------------------------------------------


def test_build_dataset(tiny_camvid: Path, folder_root: Path) -> None:
    assert set(DATASETS) == {"synthetic", "camvid", "cityscapes", "ade20k", "folder"}
    assert isinstance(build_dataset("camvid", tiny_camvid, "val"), CamVid)
    folder = build_dataset("folder", folder_root, "val", classes=["a", "b", "c"])
    assert isinstance(folder, SegmentationFolder) and folder.classes == ("a", "b", "c")
    synthetic = build_dataset("synthetic", split="val", num_images=3, size=32)
    assert isinstance(synthetic, SyntheticShapes) and synthetic.split == "val"
    with pytest.raises(ValueError, match=r"unknown dataset 'voc'; known: \['ade20k', 'camvid'"):
        build_dataset("voc", tiny_camvid)
    with pytest.raises(ValueError, match="needs a root"):
        build_dataset("cityscapes")


def test_blocky_fixture_helper_is_in_range(helpers) -> None:
    mask = helpers.blocky_mask(np.random.default_rng(0), 10, 13, [3, 4])
    assert mask.shape == (10, 13) and set(np.unique(mask)) <= {3, 4}
