"""DenseCRF post-processing (optional ``pydensecrf2``) and its install hint."""

from __future__ import annotations

import sys

import pytest
import torch

from sdnseg.inference import postprocess as pp


def noisy_two_region_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An image with a dark left and a bright right half, and softmax that is wrong (barely)
    on 20% of the pixels."""
    generator = torch.Generator().manual_seed(seed)
    height, width = 32, 48
    truth = torch.zeros(height, width, dtype=torch.long)
    truth[:, width // 2 :] = 1
    image = torch.where(truth.bool(), 200, 40).to(torch.uint8).expand(3, height, width)
    flipped = torch.rand(height, width, generator=generator) < 0.2
    confidence = torch.where(flipped, 0.45, 0.7)
    p1 = torch.where(truth.bool(), confidence, 1 - confidence)
    return image.contiguous(), torch.stack([1 - p1, p1]), truth


def test_dense_crf_cleans_up_noise_along_image_regions():
    pytest.importorskip("pydensecrf.densecrf", reason="pydensecrf2 (sdnseg[crf]) not installed")
    image, probs, truth = noisy_two_region_case()
    refined = pp.dense_crf(image, probs)
    assert refined.shape == probs.shape and refined.dtype == torch.float32
    torch.testing.assert_close(refined.sum(0), torch.ones(32, 48), atol=1e-4, rtol=0)
    before = (probs.argmax(0) == truth).float().mean()
    after = (refined.argmax(0) == truth).float().mean()
    assert before < 0.85 and after > 0.98
    # The batch form, with an HWC image as well as CHW.
    batch = pp.postprocess("crf", image[None], probs[None])
    torch.testing.assert_close(batch[0], refined)
    torch.testing.assert_close(pp.dense_crf(image.permute(1, 2, 0), probs), refined)


def test_postprocess_none_and_bad_names():
    probs = torch.rand(1, 2, 4, 4)
    assert pp.postprocess("none", torch.zeros(1, 3, 4, 4, dtype=torch.uint8), probs) is probs
    with pytest.raises(ValueError, match="postprocess must be one of"):
        pp.postprocess("bilateral", torch.zeros(1, 3, 4, 4), probs)


def test_missing_package_says_how_to_install(monkeypatch):
    # None in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'sdnseg\[crf\]'"):
        pp.require_crf()
