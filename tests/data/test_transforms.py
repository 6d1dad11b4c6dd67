"""Transforms: shapes, mmseg semantics, and image/mask alignment through every step."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torchvision import tv_tensors
from torchvision.transforms import v2

from sdnseg.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    KeepRatioResize,
    PadToSize,
    PhotoMetricDistortion,
    RandomCropCatMax,
    RandomRatioResize,
    denormalize,
    eval_transforms,
    train_transforms,
)
from sdnseg.data.transforms import keep_ratio_size

CODE = 20  # image channel 0 = class id * CODE, so the image tells which class each pixel is


def coded_item(height: int = 40, width: int = 56, block: int = 16, seed: int = 0) -> dict:
    """Blocky class map (ids 0..9) and an image whose channel 0 encodes it."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 10, (-(-height // block), -(-width // block)))
    mask = torch.from_numpy(np.kron(grid, np.ones((block, block), dtype=np.int64)))
    mask = mask[:height, :width].contiguous()
    image = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
    image[0] = (mask * CODE).to(torch.uint8)
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask), "path": "x.png"}


def interior(mask: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Pixels whose (2r+1)^2 neighbourhood lies inside the array and holds one class, not ignore.

    Near the array's edges a crop may have cut off the context the interpolation saw.
    """
    m = TF.pad(mask.float()[None, None], [radius] * 4, value=-1.0)
    k = 2 * radius + 1
    high = TF.max_pool2d(m, k, stride=1)
    low = -TF.max_pool2d(-m, k, stride=1)
    return ((high == low) & (mask != 255))[0, 0]


def decoded(image: torch.Tensor, mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    return image[0].float() * std + mean


# --- keep-ratio sizes --------------------------------------------------------------------------


def test_keep_ratio_size_mmcv_semantics() -> None:
    assert keep_ratio_size(1024, 2048, (1024, 2048)) == (1024, 2048)  # Cityscapes at scale
    assert keep_ratio_size(1024, 2048, (2048, 1024)) == (1024, 2048)  # only long/short matter
    assert keep_ratio_size(512, 683, (512, 2048)) == (512, 683)  # ADE20K short edge 512
    assert keep_ratio_size(360, 480, (512, 1024)) == (512, 683)  # CamVid, upscaled
    assert keep_ratio_size(100, 1000, (512, 512)) == (51, 512)  # long edge binds


def test_random_ratio_resize_ranges() -> None:
    item = coded_item(40, 80)
    sizes = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = RandomRatioResize((100, 200), (0.5, 2.0))(item)
        h, w = out["image"].shape[-2:]
        assert out["mask"].shape == (h, w)
        assert 50 <= w <= 400 and abs(w / h - 2.0) < 0.05
        sizes.add((h, w))
        torch.manual_seed(seed)
        own = RandomRatioResize(None, (0.5, 2.0))(item)["image"].shape[-2:]
        assert 20 <= own[0] <= 80 and 40 <= own[1] <= 160
    assert len(sizes) > 10
    fixed = RandomRatioResize((100, 200), (1.0, 1.0))(item)
    assert fixed["image"].shape[-2:] == (100, 200)
    with pytest.raises(ValueError, match="ratio_range"):
        RandomRatioResize(None, (2.0, 1.0))


# --- alignment ---------------------------------------------------------------------------------


@pytest.mark.parametrize("base_size", [None, (48, 64)])
def test_resize_keeps_image_and_mask_aligned(base_size) -> None:
    item = coded_item()
    for seed in range(25):
        torch.manual_seed(seed)
        out = RandomRatioResize(base_size, (0.5, 2.0))(item)
        mask = out["mask"].as_subclass(torch.Tensor)
        assert set(mask.unique().tolist()) <= set(item["mask"].unique().tolist())
        inner = interior(mask)
        assert inner.float().mean() > 0.05
        assert torch.equal(decoded(out["image"])[inner], (mask * CODE).float()[inner])


def test_crop_flip_pad_are_exact() -> None:
    item = coded_item(40, 56, block=8)
    source = item["mask"].as_subclass(torch.Tensor)
    pipeline = v2.Compose(
        [RandomCropCatMax((32, 64)), v2.RandomHorizontalFlip(0.5), PadToSize((32, 64))]
    )
    flips = 0
    for seed in range(30):
        torch.manual_seed(seed)
        out = pipeline(item)
        image, mask = out["image"], out["mask"].as_subclass(torch.Tensor)
        assert image.shape == (3, 32, 64) and mask.shape == (32, 64)
        assert bool((mask[:, 56:] == 255).all()) and bool((image[:, :, 56:] == 0).all())
        valid = mask != 255
        assert torch.equal(image[0][valid].long(), mask[valid] * CODE)
        # The crop keeps the full width: what shows is a band of source rows, maybe flipped.
        shown = mask[:, :56]
        bands = [source[top : top + 32] for top in range(9)]
        plain = any(torch.equal(shown, band) for band in bands)
        flipped = any(torch.equal(shown, band.flip(-1)) for band in bands)
        assert plain != flipped
        flips += flipped
    assert 5 < flips < 25


@pytest.mark.parametrize("base_size", [None, (40, 56)])
def test_train_pipeline_alignment(base_size) -> None:
    item = coded_item()
    transforms = train_transforms(
        base_size, (32, 32), mean=(10.0, 0.0, 0.0), std=(2.0, 1.0, 1.0), photometric=False
    )
    for seed in range(30):
        torch.manual_seed(seed)
        out = transforms(item)
        image, mask = out["image"], out["mask"].as_subclass(torch.Tensor)
        assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
        assert mask.dtype == torch.int64 and mask.shape == (32, 32)
        assert out["path"] == "x.png"
        inner = interior(mask)
        values = decoded(image, mean=10.0, std=2.0)[inner]
        torch.testing.assert_close(values, (mask * CODE).float()[inner], atol=1e-3, rtol=0)
        pad = mask == 255  # only padding is ignored here: image 0 after normalisation
        assert bool((image[:, pad] == 0).all())


def test_train_pipeline_with_photometric_shapes_and_mask_ids() -> None:
    item = coded_item()
    transforms = train_transforms(None, (24, 40))
    for seed in range(5):
        torch.manual_seed(seed)
        out = transforms(item)
        assert out["image"].shape == (3, 24, 40) and out["image"].dtype == torch.float32
        ids = set(out["mask"].unique().tolist())
        assert ids <= set(range(10)) | {255}


# --- cat_max_ratio -----------------------------------------------------------------------------


def halves_item() -> dict:
    mask = torch.zeros(16, 64, dtype=torch.int64)
    mask[:, 32:] = 1
    image = torch.zeros(3, 16, 64, dtype=torch.uint8)
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)}


def balanced(mask: torch.Tensor, ratio: float = 0.75) -> bool:
    counts = torch.bincount(mask[mask != 255].flatten())
    counts = counts[counts > 0]
    return len(counts) > 1 and float(counts.max() / counts.sum()) < ratio


def test_cat_max_ratio_prefers_mixed_crops() -> None:
    item = halves_item()
    checked, unchecked = 0, 0
    for seed in range(60):
        torch.manual_seed(seed)
        checked += balanced(RandomCropCatMax((16, 24), 0.75)(item)["mask"])
        torch.manual_seed(seed)
        unchecked += balanced(RandomCropCatMax((16, 24), 1.0)(item)["mask"])
    # 11 of the 41 crop positions are balanced; ten tries find one 96% of the time.
    assert unchecked < 30 and checked > 50


def test_cat_max_ratio_check_skips_ignore() -> None:
    crop = RandomCropCatMax((10, 10), 0.75)
    box = (0, 0, 10, 10)
    mask = torch.zeros(10, 10, dtype=torch.int64)
    mask[:3] = 1  # 70% / 30%
    assert crop._accept(mask, box)
    mask[:2] = 255  # 70 of 80 counted pixels are class 0: 87.5%
    assert not crop._accept(mask, box)
    assert not crop._accept(torch.zeros(10, 10, dtype=torch.int64), box)  # one class
    assert not crop._accept(torch.full((10, 10), 255), box)  # nothing counted


def test_crop_is_clipped_to_the_image() -> None:
    item = halves_item()
    out = RandomCropCatMax((32, 24), 0.75)(item)
    assert out["mask"].shape == (16, 24) and out["image"].shape == (3, 16, 24)


# --- photometric distortion --------------------------------------------------------------------


def _params(**overrides) -> dict:
    params = {
        "brightness": None,
        "contrast_first": True,
        "contrast": None,
        "saturation": None,
        "hue": None,
    }
    params.update(overrides)
    return params


def _rgb_image(seed: int = 0) -> tv_tensors.Image:
    rng = np.random.default_rng(seed)
    return tv_tensors.Image(torch.from_numpy(rng.integers(0, 256, (3, 6, 7), dtype=np.uint8)))


def _hsv_reference(image: torch.Tensor, s_factor: float = 1.0, h_shift: float = 0.0) -> np.ndarray:
    out = np.empty(image.shape, dtype=np.float64)
    pixels = image.numpy().astype(np.float64) / 255.0
    for i in range(image.shape[1]):
        for j in range(image.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*pixels[:, i, j])
            out[:, i, j] = colorsys.hsv_to_rgb((h + h_shift) % 1.0, min(s * s_factor, 1.0), v)
    return out * 255.0


def test_photometric_steps_match_mmseg() -> None:
    t = PhotoMetricDistortion()
    image = _rgb_image()
    x = image.as_subclass(torch.Tensor).float()
    out = t.transform(image, _params(brightness=20.5))
    assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8
    assert torch.equal(out.as_subclass(torch.Tensor), (x + 20.5).clamp(0, 255).to(torch.uint8))
    out = t.transform(image, _params(contrast=1.3))
    assert torch.equal(out.as_subclass(torch.Tensor), (x * 1.3).clamp(0, 255).to(torch.uint8))
    for factor in (0.3, 1.4):
        out = t.transform(image, _params(saturation=factor)).float()
        expected = torch.from_numpy(_hsv_reference(image, s_factor=factor)).float()
        assert (out - expected).abs().max() <= 1.0
    out = t.transform(image, _params(hue=18)).float()
    expected = torch.from_numpy(_hsv_reference(image, h_shift=0.1)).float()
    assert (out - expected).abs().max() <= 1.5


def test_photometric_leaves_mask_and_applies_each_step_half_the_time() -> None:
    item = coded_item()
    t = PhotoMetricDistortion()
    applied = {"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0}
    for seed in range(200):
        torch.manual_seed(seed)
        params = t.make_params([item["image"]])
        for key in applied:
            applied[key] += params[key] is not None
        assert params["hue"] is None or -18 <= params["hue"] <= 18
        assert params["brightness"] is None or abs(params["brightness"]) <= 32
    assert all(70 < count < 130 for count in applied.values())
    torch.manual_seed(0)
    out = t(item)
    assert out["mask"] is item["mask"] and out["image"].dtype == torch.uint8
    with pytest.raises(ValueError, match="uint8"):
        t.transform(tv_tensors.Image(torch.zeros(3, 2, 2)), _params(brightness=1.0))


# --- padding and evaluation --------------------------------------------------------------------


def test_pad_to_size() -> None:
    item = coded_item(10, 12)
    out = PadToSize((16, 12), fill=0, mask_fill=255)(item)
    assert out["image"].shape == (3, 16, 12) and out["mask"].shape == (16, 12)
    assert bool((out["mask"][10:] == 255).all()) and bool((out["image"][:, 10:] == 0).all())
    assert torch.equal(out["mask"][:10], item["mask"])
    assert PadToSize((4, 4))(item)["image"].shape == (3, 10, 12)  # never crops


def test_eval_transforms_keep_the_original_mask() -> None:
    item = coded_item(36, 48)
    out = eval_transforms(base_size=(72, 96))(item)
    assert out["image"].shape == (3, 72, 96) and out["image"].dtype == torch.float32
    assert out["mask"] is item["mask"]  # untouched, original resolution
    full = eval_transforms()(item)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(
        full["image"].as_subclass(torch.Tensor), (item["image"] - mean) / std
    )
    assert torch.equal(full["mask"], item["mask"])


def test_keep_ratio_resize_image_only_alignment() -> None:
    item = coded_item(40, 56)
    out = KeepRatioResize((80, 112), resize_mask=True)(item)
    mask = out["mask"].as_subclass(torch.Tensor)
    inner = interior(mask)
    assert torch.equal(decoded(out["image"])[inner], (mask * CODE).float()[inner])
    assert KeepRatioResize((80, 112), resize_mask=False)(item)["mask"].shape == (40, 56)


# --- denormalize -------------------------------------------------------------------------------


def test_denormalize_by_hand() -> None:
    mean, std = (100.0, 50.0, 0.0), (10.0, 2.0, 100.0)
    images = torch.tensor([[[0.0, 1.26]], [[-30.0, 3.0]], [[0.004, 9.0]]])  # (3, 1, 2)
    # 100 + 10 * (0, 1.26) = (100, 112.6); 50 + 2 * (-30, 3) = (-10, 56); 100 * (0.004, 9).
    expected = torch.tensor([[[100, 113]], [[0, 56]], [[0, 255]]], dtype=torch.uint8)
    out = denormalize(images, mean, std)
    assert out.dtype == torch.uint8 and torch.equal(out, expected)
    assert torch.equal(denormalize(images[None], mean, std), expected[None])  # batched


def test_denormalize_resizes_before_rounding() -> None:
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    images = torch.tensor([0.0, 3.0]).view(1, 1, 2).expand(3, 1, 2)
    # Bilinear 2 -> 4 (align_corners=False) samples the source at -0.25, 0.25, 0.75, 1.25, clamped
    # to [0, 1]: 0, 0.75, 2.25, 3, rounded after the resize to 0, 1, 2, 3.
    out = denormalize(images, mean, std, size=(1, 4))
    assert out.shape == (3, 1, 4) and out[0, 0].tolist() == [0, 1, 2, 3]
    assert torch.equal(denormalize(images, mean, std, size=(1, 2)), images.to(torch.uint8))
