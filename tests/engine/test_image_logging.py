"""TensorBoard pictures of fixed validation images, and the lr / loss curves, of ``sdnseg fit``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sdnseg.engine.image_logging import ValidationImages
from sdnseg.engine.module import SegmentationModule


def test_fit_logs_validation_pictures_and_curves(trained):
    events = EventAccumulator(str(trained), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    # The tiny fit has 4 validation images and validates once, at its last step (4).
    assert sorted(tags["images"]) == [f"val_images/{i}" for i in range(4)]
    for tag in tags["images"]:
        (picture,) = events.Images(tag)
        assert picture.step == 4
        # overlay | truth | prediction | errors at the 32x32 mask size, 4 px gaps
        assert (picture.height, picture.width) == (32, 4 * 32 + 3 * 4)
    for curve in ("train/loss", "train/lr", "val/loss"):
        assert curve in tags["scalars"], curve
    lrs = [s.value for s in events.Scalars("train/lr")]
    assert len(lrs) >= 3 and lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]  # poly decay


def test_panels_show_the_prediction_and_its_errors():
    module = SegmentationModule(
        arch="fcn_r18d8",
        num_classes=3,
        model_overrides={"backbone": "resnet10t", "backbone_kwargs": {}},
    ).eval()
    image = torch.randn(3, 32, 32)
    mask = torch.zeros(32, 32, dtype=torch.int64)
    mask[:, 16:] = 1
    mask[:4] = 255  # unlabelled: black in the error map whatever the prediction
    (picture,) = ValidationImages(num_images=1).panels(module, [{"image": image, "mask": mask}])
    assert picture.shape == (32, 4 * 32 + 12, 3) and picture.dtype == np.uint8
    with torch.no_grad():
        logits = module.net(image[None])[0]
    pred = logits.argmax(dim=0).numpy()
    # An untrained net has near-ties; their argmax may flip with the thread count. Check the
    # pixels whose top two logits are clearly apart.
    top2 = logits.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-3).numpy()
    errors = picture[:, -32:]
    wrong = (pred != mask.numpy()) & (mask.numpy() != 255)
    palette = np.asarray(module.metadata().data.palette, dtype=np.uint8)
    assert (wrong & clear).any() and (errors[~wrong & clear] == 0).all()
    # wrong: the predicted class's colour
    assert (errors[wrong & clear] == palette[pred[wrong & clear]]).all()
    prediction = picture[:, 2 * 36 : 2 * 36 + 32]  # third panel: the prediction's colours
    assert (prediction[clear] == palette[pred[clear]]).all()
    with pytest.raises(ValueError, match="num_images"):
        ValidationImages(num_images=0)
