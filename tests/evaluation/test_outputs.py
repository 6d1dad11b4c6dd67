"""write_label_png: the label PNGs sdnseg writes and reads back, read here by OpenCV."""

import cv2
import numpy as np
import pytest

from sdnseg.evaluation.outputs import write_label_png


@pytest.mark.parametrize(("top", "dtype"), [(11, np.uint8), (255, np.uint8), (300, np.uint16)])
def test_a_label_png_reads_back_exactly_in_the_narrowest_depth(tmp_path, top, dtype):
    labels = np.random.default_rng(0).integers(0, top + 1, (7, 9))
    labels[0, 0] = top
    path = write_label_png(tmp_path / "a_labels.png", labels)
    read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert read.dtype == dtype and np.array_equal(read, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["a_labels.png"]  # no temp file left


@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.zeros((2, 3, 3)), r"must be \(H, W\), got shape \(2, 3, 3\)"),
     (np.full((2, 2), -1), r"0\.\.65535, got -1\.\.-1"),
     (np.full((2, 2), 70000), r"0\.\.65535, got 70000\.\.70000")],
)  # fmt: skip
def test_a_label_png_that_cannot_hold_the_labels_is_refused_by_path(tmp_path, labels, match):
    with pytest.raises(ValueError, match=match) as error:
        write_label_png(tmp_path / "bad.png", labels)
    assert "bad.png" in str(error.value) and not any(tmp_path.iterdir())
