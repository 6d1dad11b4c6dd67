"""``sdnseg evaluate`` on tiny folders: known scores, the same numbers as the metric classes, a
report that parses, and a clear error for every kind of bad input."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sdnseg.engine.cli import main
from sdnseg.metrics import MetricSuite


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _maps():
    """Two 8x8 images, classes 0/1/2 and void 255; the predictions get one column wrong."""
    gt = np.zeros((2, 8, 8), np.uint8)
    gt[0, :, 4:] = 1
    gt[1, 2:6, 2:6] = 2
    gt[1, 0, :] = 255
    pred = gt.copy()
    pred[0, :, 4] = 0  # one column of class 1 predicted as 0
    pred[1, 0, :] = 0  # void: never scored
    return pred, gt


@pytest.fixture
def folders(tmp_path):
    pred, gt = _maps()
    for i in range(2):
        _write(tmp_path / "gt" / f"img{i}.png", gt[i])
        _write(tmp_path / "pred" / f"img{i}_labels.png", pred[i])  # sdnseg predict's naming
    (tmp_path / "classes.txt").write_text("road\ncar\nsign\n")
    return tmp_path


def _evaluate(folders, *extra):
    out = folders / "out"
    args = ["evaluate", "--pred", str(folders / "pred"), "--gt", str(folders / "gt")]
    args += ["--dataset", "folder", "--classes", str(folders / "classes.txt")]
    return main([*args, "--output", str(out), "--no-progress", *extra]), out


def test_known_scores_and_the_metric_classes_numbers(folders):
    code, out = _evaluate(folders)
    assert code == 0
    result = json.loads((out / "evaluation.json").read_text())
    # Class 0: 32 + 8 wrong column = 40 predicted, 32 true, 32 hit -> IoU 32/40; class 1: 24/32;
    # class 2 and image 1's class 0 all right: IoU 1 for class 2, class 0 adds 40 hits.
    iou = [row["IoU"] for row in result["per_class"].values()]
    assert iou == pytest.approx([(32 + 40) / (40 + 40), 24 / 32, 1.0])
    assert list(result["per_class"]) == ["road", "car", "sign"]
    assert result["images"] == 2
    pred, gt = _maps()
    suite = MetricSuite(3, ["road", "car", "sign"])
    suite.update(torch.from_numpy(pred).long(), torch.from_numpy(gt).long())
    expected = suite.compute().to_dict()
    assert result["headline"] == pytest.approx(expected["headline"], nan_ok=True)
    for name, row in expected["per_class"].items():
        assert result["per_class"][name] == pytest.approx(row, nan_ok=True), name
    assert result["confusion"] == expected["confusion"]
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0].startswith("class,IoU,Acc") and rows[1].startswith("road,0.9")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_report_parses_and_holds_tables_figures_and_error_maps(folders):
    code, out = _evaluate(folders, "--top-k", "1")
    assert code == 0
    page = (out / "report.html").read_text()
    parser = _Collect()
    parser.feed(page)
    assert parser.tags.count("table") == 2  # headline and per class
    # trimap curve, confusion matrix, one error map; all inlined PNGs
    assert len(parser.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert "img0" in page  # the image with the larger boundary error


def test_bad_input_is_named(folders, capsys):
    _write(folders / "gt" / "img2.png", np.zeros((8, 8)))
    code, _ = _evaluate(folders)
    err = capsys.readouterr().err
    assert code == 1 and "img2.png" in err and "no prediction" in err
    code, out = _evaluate(folders, "--allow-missing")
    assert code == 0
    skipped = json.loads((out / "evaluation.json").read_text())["skipped"]
    assert [Path(p).name for p in skipped["ground_truth_without_prediction"]] == ["img2.png"]
    (folders / "gt" / "img2.png").unlink()
    _write(folders / "pred" / "img1_labels.png", np.zeros((8, 9)))
    assert _evaluate(folders)[0] == 1
    assert "img1_labels.png is 9x8" in capsys.readouterr().err
    _write(folders / "pred" / "img1_labels.png", np.full((8, 8), 7))
    assert _evaluate(folders)[0] == 1
    assert "ids [7]" in capsys.readouterr().err
    (folders / "pred" / "img1_labels.png").write_bytes(b"not a png")
    assert _evaluate(folders)[0] == 1
    assert "img1_labels.png" in capsys.readouterr().err


@pytest.mark.parametrize("pred_ids", ["train", "dataset"])
def test_cityscapes_label_ids_and_layouts(tmp_path, pred_ids):
    # labelIds 7 (road -> 0), 26 (car -> 13), 0 (unlabelled -> ignored), in the gtFine layout;
    # predictions flat, named as mmsegmentation writes them.
    gt = np.full((6, 6), 7, np.uint8)
    gt[2:4, 2:4] = 26
    gt[0] = 0
    _write(tmp_path / "gt" / "val" / "aachen" / "aachen_000000_000019_gtFine_labelIds.png", gt)
    _write(tmp_path / "gt" / "val" / "aachen" / "aachen_000000_000019_gtFine_color.png", gt)
    pred = np.where(gt == 26, 13, 0) if pred_ids == "train" else np.where(gt == 26, 26, 7)
    _write(tmp_path / "pred" / "aachen_000000_000019_leftImg8bit.png", pred)
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    args += ["--dataset", "cityscapes", "--pred-ids", pred_ids, "--output", str(tmp_path / "o")]
    assert main([*args, "--no-progress"]) == 0
    result = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert result["images"] == 1 and result["headline"]["mIoU"] == pytest.approx(1.0)
    assert result["per_class"]["car"]["IoU"] == 1.0
    assert sum(map(sum, result["confusion"])) == 30  # the unlabelled row is not scored


def test_ade20k_reduce_zero_label(tmp_path, capsys):
    gt = np.zeros((4, 4), np.uint8)  # 0 = other: ignored
    gt[:, 2:] = 3  # class 3 -> train id 2
    _write(tmp_path / "gt" / "ADE_val_00000001.png", gt)
    _write(tmp_path / "pred" / "ADE_val_00000001.png", np.full((4, 4), 2))
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt")]
    args += ["--dataset", "ade20k", "--output", str(tmp_path / "o"), "--no-progress"]
    assert main(args) == 0
    result = json.loads((tmp_path / "o" / "evaluation.json").read_text())
    assert result["per_class"]["sky"]["IoU"] == 1.0 and result["headline"]["aAcc"] == 1.0
