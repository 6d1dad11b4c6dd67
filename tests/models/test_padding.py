"""The padded-forward rule: pad bottom/right to a multiple, resize to the padded size, crop."""

import torch
import torch.nn.functional as F

from sdnseg.models.padding import crop_padding, pad_to_multiple, valid_size


def test_pad_to_multiple_pads_bottom_right_with_zeros_only_where_needed():
    x = torch.arange(1.0, 1 + 2 * 5 * 7).view(1, 2, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert padded[..., 5:, :].abs().sum() == 0 and padded[..., :, 7:].abs().sum() == 0
    assert torch.equal(pad_to_multiple(x[..., :4, :4], 4), x[..., :4, :4])


def test_crop_padding_resizes_to_the_padded_size_then_crops():
    logits = torch.randn(2, 3, 2, 2)
    expected = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crop_padding(logits, (8, 8), (5, 7)), expected[..., :5, :7])
    full = torch.randn(1, 3, 8, 8)  # already at the padded size: only cropped
    assert torch.equal(crop_padding(full, (8, 8), (6, 8)), full[..., :6, :])


def test_valid_size_is_the_image_fraction_rounded_up():
    # A 50x70 image padded to 64x96 covers ceil(8 * 50/64) = 7 rows, ceil(12 * 70/96) = 9 cols.
    assert valid_size((8, 12), (50, 70), (64, 96)) == (7, 9)
    assert valid_size((8, 12), (64, 96), (64, 96)) == (8, 12)
