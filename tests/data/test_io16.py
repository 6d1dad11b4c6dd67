"""16-bit images are rescaled by their bit depth, not clipped (training and predict share
``read_image``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from sdnseg.data.io import read_image
from sdnseg.inference.images import ImageFiles


def test_16_bit_greyscale_is_rescaled(tmp_path):
    values = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0..64491
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    image = read_image(path).numpy()
    expected = np.rint(values / 257.0)  # 65535 -> 255
    assert image.shape == (3, 48, 64)
    np.testing.assert_array_equal(image[0], expected)
    np.testing.assert_array_equal(image[1], image[2])
    assert abs(image.mean() - expected.mean()) < 1e-9  # not saturated: mean ~126, not ~255
    rgb = ImageFiles([path])[0]["rgb"].numpy()  # predict's reader
    np.testing.assert_array_equal(rgb, image)


def test_16_bit_rgb_is_read_at_8_bits(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), values[..., ::-1])  # OpenCV writes BGR
    image = read_image(path).permute(1, 2, 0).numpy().astype(np.float64)
    np.testing.assert_allclose(image, values / 257.0, atol=1.0)


def test_float_images_are_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), -1.5, np.float32)).save(path)
    with pytest.raises(ValueError, match=r"image .*float.tif has PIL mode 'F'"):
        read_image(path)
