import numpy as np
import pytest
from PIL import Image

from sdnseg.viz.segmentation import ERROR_COLOUR, comparison_figure, error_map


def test_error_map_colours_wrong_labelled_pixels_only():
    target = np.array([[0, 1], [255, 2]])
    pred = np.array([[0, 2], [1, 1]])
    out = error_map(pred, target)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert (out[0, 0] == 0).all()  # right
    assert tuple(out[0, 1]) == ERROR_COLOUR  # wrong
    assert (out[1, 0] == 0).all()  # unlabelled: not an error
    palette = [(0, 0, 0), (10, 20, 30), (40, 50, 60)]
    assert tuple(error_map(pred, target, palette=palette)[1, 1]) == (10, 20, 30)
    with pytest.raises(ValueError, match="differ in shape"):
        error_map(pred, target[:1])


def test_comparison_figure(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (16, 20, 3), dtype=np.uint8) for _ in range(2)]
    targets = [rng.integers(0, 3, (16, 20)) for _ in range(2)]
    preds = {"a": targets, "b": [t[::-1] for t in targets]}
    path = comparison_figure(tmp_path / "cmp.png", images, targets, preds, [(0, 0, 0)] * 3)
    with Image.open(path) as img:
        assert img.size[0] > img.size[1]


def test_error_panel_is_gt_prediction_and_errors_side_by_side():
    from sdnseg.viz.segmentation import error_panel

    target = np.array([[0, 1], [255, 1]])
    pred = np.array([[0, 0], [1, 1]])
    palette = [(10, 20, 30), (200, 100, 50)]
    panel = error_panel(pred, target, palette, gap=1)
    assert panel.shape == (2, 2 * 3 + 2, 3) and panel.dtype == np.uint8
    assert (panel[:, 2] == 255).all() and (panel[:, 5] == 255).all()  # gaps
    assert tuple(panel[1, 0]) == (0, 0, 0)  # unlabelled ground truth: black
    assert tuple(panel[0, 4]) == palette[0]  # prediction
    assert tuple(panel[0, 7]) == palette[0] and tuple(panel[1, 6]) == (0, 0, 0)  # errors
    with_image = error_panel(pred, target, palette, image=np.zeros((2, 2, 3), np.uint8), gap=1)
    assert with_image.shape == (2, 11, 3)
    with pytest.raises(ValueError, match="differ in size"):
        error_panel(pred, target, palette, image=np.zeros((3, 2, 3), np.uint8))
