"""Segmentor contract (padding, train/eval outputs), slide inference, TTA, and the losses."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.models import FCNHead, Segmentor, SegmentorOutput, cross_entropy, segmentation_loss
from sdnseg.nn import SingleScaleSDN


@pytest.mark.parametrize("size", [(32, 32), (17, 23)])
def test_eval_returns_logits_at_input_size(toy_segmentor, size):
    model = toy_segmentor().eval()
    out = model(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 5, *size)
    assert model.num_classes == 5


def test_forward_is_logits_and_forward_train_adds_aux(toy_segmentor):
    model = toy_segmentor().train()
    images = torch.randn(2, 3, 19, 21)
    out = model.forward_train(images)
    assert isinstance(out, SegmentorOutput) and set(out.aux) == {"aux"}
    assert out.logits.shape == out.aux["aux"].shape == (2, 5, 19, 21)
    logits = model(images)  # train mode too: logits, not a dict
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 19, 21)
    assert toy_segmentor(aux=False).train().forward_train(torch.randn(2, 3, 16, 16)).aux == {}


class _HeadWithAux(nn.Module):
    """Logits from the last feature, auxiliary logits from the first (as OCRHead returns both)."""

    returns_aux = True

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = 5
        self.main, self.aux = nn.Conv2d(16, 5, 1), nn.Conv2d(8, 5, 1)

    def forward(self, features):
        return self.main(features[-1]), self.aux(features[0])


def test_a_head_that_returns_aux_logits_gives_them_in_training_only(toy_segmentor):
    backbone = toy_segmentor(aux=False).backbone
    model = Segmentor(backbone, _HeadWithAux())
    assert model.has_aux and not toy_segmentor(aux=False).has_aux and toy_segmentor().has_aux
    images = torch.randn(2, 3, 19, 21)
    out = model.forward_train(images)
    features = backbone(F.pad(images, (0, 3, 0, 1)))  # the padded forward, to 20 x 24
    expected = F.interpolate(model.head.aux(features[0]), size=(20, 24), mode="bilinear")
    torch.testing.assert_close(out.aux["aux"], expected[..., :19, :21])
    logits = model(images)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 5, 19, 21)
    torch.testing.assert_close(logits, out.logits)
    aux_head = FCNHead(8, 5, channels=4, num_convs=1, concat_input=False, in_index=0)
    with pytest.raises(ValueError, match="returns its own auxiliary logits"):
        Segmentor(backbone, _HeadWithAux(), aux_head=aux_head)


def test_input_is_zero_padded_bottom_right_and_logits_cropped(toy_segmentor):
    model = toy_segmentor().eval()
    assert model.size_divisor == 4
    x = torch.randn(1, 3, 17, 23)
    padded = F.pad(x, (0, 1, 0, 3))  # to 20 x 24
    torch.testing.assert_close(model(x), model(padded)[..., :17, :23], atol=0, rtol=0)


def test_sdn_neck_keeps_the_divisor_and_odd_sizes_work(toy_segmentor):
    neck = SingleScaleSDN([8, 16], guidance_channels=4, sdc_channels=4)
    assert toy_segmentor(neck=neck).size_divisor == toy_segmentor().size_divisor == 4
    # Φ's output of an odd-sized map is resized bilinearly in the SDC.
    model = toy_segmentor(neck=neck, size_divisor=1).eval()
    features = model.features(torch.randn(1, 3, 21, 13))
    assert [f.shape[-2:] for f in features] == [(11, 7), (6, 4)]
    assert model(torch.randn(1, 3, 21, 13)).shape == (1, 5, 21, 13)


def test_slide_equals_whole_when_one_crop_covers_the_image(toy_segmentor):
    model = toy_segmentor().eval()
    x = torch.randn(2, 3, 20, 28)
    whole = model.inference(x, output="logits")
    slide = model.inference(x, mode="slide", crop_size=(32, 32), stride=(16, 16), output="logits")
    torch.testing.assert_close(slide, whole)


def test_slide_averages_overlapping_crops(toy_segmentor):
    # A per-pixel model gives every crop the same logits as the whole image.
    model = toy_segmentor(stride=1).eval()
    x = torch.randn(1, 3, 23, 30)
    whole = model.inference(x, output="logits")
    slide = model.slide_inference(x, crop_size=(10, 12), stride=(7, 5))
    torch.testing.assert_close(slide, whole)


def test_tta_single_view_is_softmax_of_plain_inference(toy_segmentor):
    model = toy_segmentor().eval()
    x = torch.randn(1, 3, 21, 18)
    torch.testing.assert_close(model.inference(x, scales=(1.0,), flip=False), model(x).softmax(1))


def test_tta_multi_scale_and_flip(toy_segmentor):
    per_pixel = toy_segmentor(stride=1).eval()
    x = torch.randn(1, 3, 16, 16)
    # A per-pixel model commutes with flipping.
    torch.testing.assert_close(per_pixel.inference(x, flip=True), per_pixel.inference(x))
    model = toy_segmentor().eval()
    probs = model.inference(
        x, mode="slide", crop_size=12, stride=8, scales=(0.5, 1.0, 1.5), flip=True
    )
    assert probs.shape == (1, 5, 16, 16)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 16, 16))
    labels = model.predict(x, scales=(0.75, 1.25))
    assert labels.shape == (1, 16, 16) and labels.dtype == torch.int64


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "sliding"}, {"mode": "slide"}, {"output": "labels"}, {"scales": ()}],
)
def test_inference_rejects_bad_arguments(toy_segmentor, kwargs):
    with pytest.raises(ValueError):
        toy_segmentor().eval().inference(torch.randn(1, 3, 8, 8), **kwargs)


def test_losses():
    logits, target = torch.randn(2, 5, 8, 8), torch.randint(0, 5, (2, 8, 8))
    target[0, :4] = 255
    plain = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(cross_entropy(logits, target, avg_non_ignore=True), plain)
    labelled = (target != 255).sum() / target.numel()
    torch.testing.assert_close(cross_entropy(logits, target), plain * labelled)  # mmseg's mean
    aux = torch.randn(2, 5, 4, 4)  # resized to the target size
    expected = cross_entropy(logits, target) + 0.4 * cross_entropy(aux, target)
    output = SegmentorOutput(logits, {"aux": aux})
    torch.testing.assert_close(segmentation_loss(output, target), expected)
    torch.testing.assert_close(segmentation_loss(logits, target), cross_entropy(logits, target))
    assert segmentation_loss(logits, torch.full_like(target, 255), avg_non_ignore=True) == 0
    with pytest.raises(ValueError, match="'edges'"):
        segmentation_loss(SegmentorOutput(logits, {"edges": aux}), target)
