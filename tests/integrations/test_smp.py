"""SDN inside segmentation_models.pytorch models: every supported architecture at a tiny size."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

smp = pytest.importorskip("segmentation_models_pytorch", reason="pip install 'sdnseg[smp]'")

from sdnseg.integrations.smp import (  # noqa: E402
    DECODER_INPUTS,
    add_sdn,
    decoder_stages,
    from_pretrained,
    remove_sdn,
)

# PAN's feature pyramid attention halves its stride-16 input three times: 128 px at least.
SIZES = {"PAN": 128}


def build(name: str, **kwargs) -> nn.Module:
    encoder = "mit_b0" if name == "Segformer" else "resnet18"
    return getattr(smp, name)(encoder, encoder_weights=None, classes=3, **kwargs)


def images(name: str, batch: int = 2) -> torch.Tensor:
    size = SIZES.get(name, 96)  # 96: the last feature 3x3 and its guidance Φ 2x2, not constant
    return torch.randn(batch, 3, size, size)


def read_by_decoder(model: nn.Module, x: torch.Tensor) -> list[int]:
    """The encoder features the decoder's output depends on, found by autograd (each feature
    detached, so that gradients do not flow on through the encoder)."""
    features = [f.detach().requires_grad_() for f in model.encoder(x)]
    model.segmentation_head(model.decoder(features)).sum().backward()
    return [i for i, f in enumerate(features) if f.grad is not None and f.grad.abs().sum() > 0]


@pytest.mark.parametrize("name", list(DECODER_INPUTS))
def test_each_architecture_with_sdn(name):
    model = build(name)
    x = images(name)
    # The table of what each decoder reads against the decoder itself (the input image, stage
    # 0, is never diffused; mit_b0's empty stage 1 carries no gradient).
    read = read_by_decoder(model, x)
    assert [i for i in read if i > 0] == decoder_stages(model)
    model.zero_grad()
    model.eval()
    with torch.no_grad():
        plain = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    add_sdn(model)
    assert isinstance(model.encoder, nn.Module) and isinstance(model.decoder, nn.Module)
    assert model.segmentation_head is not None
    assert model.sdn.multi_scale == (len(decoder_stages(model)) > 1)  # the paper's choice
    with torch.no_grad():
        raw = model.encoder(x)  # the encoder itself is untouched: raw features
        diffused = model(x)
    assert torch.equal(raw[-1], model.encoder(x)[-1])
    assert diffused.shape == plain.shape == (2, 3, *x.shape[-2:])
    assert not torch.allclose(diffused, plain)
    # The SDN-less path is unchanged: the weights it had, and its logits once the neck is gone.
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in before.items())
    assert {k for k in state if k not in before} == {k for k in state if k.startswith("sdn.")}

    trained = copy.deepcopy(model).train()  # a copy keeps its neck (the hook follows it)
    trained(x).square().mean().backward()
    without_grad = [
        n for n, p in trained.sdn.named_parameters() if p.grad is None or not p.grad.any()
    ]
    assert without_grad == []
    assert all(p.grad is not None for p in trained.decoder.parameters() if p.requires_grad)

    remove_sdn(model)
    with torch.no_grad():
        assert torch.equal(model(x), plain)
    assert not hasattr(model, "sdn") and "_sdn" not in model.config


def test_single_and_multi_scale_by_one_argument():
    unet = add_sdn(build("Unet"), multi_scale=False, guidance_channels=8, sdc_channels=8)
    assert unet.sdn.stages == (5,) and not unet.sdn.multi_scale
    assert type(unet.sdn.sdn).__name__ == "SingleScaleSDN"
    deeplab = add_sdn(build("DeepLabV3"), multi_scale=True)
    assert deeplab.sdn.stages == (5,) and type(deeplab.sdn.sdn).__name__ == "MultiScaleSDN"
    fpn = add_sdn(build("FPN"))
    assert fpn.sdn.stages == (2, 3, 4, 5) and len(fpn.sdn.sdn.sdns) == 4


def test_classification_head_and_predict_keep_smp_contract():
    model = add_sdn(build("Unet", aux_params={"classes": 4}))
    masks, labels = model(images("Unet"))
    assert masks.shape == (2, 3, 96, 96) and labels.shape == (2, 4)
    masks, labels = model.predict(images("Unet", 1))
    assert masks.shape == (1, 3, 96, 96) and not model.training
    fpn = add_sdn(build("FPN"))
    assert fpn.requires_divisible_input_shape
    with pytest.raises(RuntimeError, match="divisible by 32"):
        fpn(torch.randn(1, 3, 90, 90))  # SMP's own input check still runs


@pytest.mark.parametrize(("name", "multi_scale"), [("Unet", True), ("DeepLabV3Plus", False)])
def test_save_pretrained_round_trip(tmp_path, name, multi_scale):
    model = add_sdn(build(name), multi_scale=multi_scale, guidance_channels=8, operator="sdc")
    model.train()
    for _ in range(2):  # move the BatchNorm statistics off their initial values
        model(images(name))
    model.eval()
    x = images(name, 1)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_sdn"]["multi_scale"] is multi_scale and config["_sdn"]["guidance_channels"] == 8
    reloaded = from_pretrained(tmp_path)
    assert type(reloaded) is type(model) and not reloaded.training
    with torch.no_grad():
        assert torch.equal(reloaded(x), expected)
    # SMP's own loader rebuilds the constructor's arguments only, and refuses the neck's tensors.
    with pytest.raises(RuntimeError, match="sdn"):
        smp.from_pretrained(str(tmp_path))


def test_loader_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_pretrained(tmp_path)
    plain = tmp_path / "plain"
    build("FPN").save_pretrained(plain)
    with pytest.raises(ValueError, match=r"plain.*config.json.*'_sdn'"):
        from_pretrained(plain)
    edited = tmp_path / "edited"
    add_sdn(build("FPN"), guidance_channels=8).save_pretrained(edited)
    config = json.loads((edited / "config.json").read_text())
    config["_sdn"]["guidance_channels"] = 16
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model.safetensors.*shape.*sdn\.sdn\.guidance"):
        from_pretrained(edited)


def test_bad_models_and_arguments_are_refused():
    model = add_sdn(build("Linknet"))
    with pytest.raises(ValueError, match="already"):
        add_sdn(model)
    with pytest.raises(ValueError, match="unknown SDN arguments"):
        add_sdn(build("Linknet"), channels=3)
    dpt = smp.DPT("tu-vit_tiny_patch16_224", encoder_weights=None, classes=2)
    with pytest.raises(ValueError, match="DPT"):
        add_sdn(dpt)
    with pytest.raises(ValueError, match="no SDN neck"):
        remove_sdn(build("Linknet"))


class LastFeature(nn.Conv2d):
    """A decoder that takes the feature list and reads its last entry."""

    def forward(self, features):
        return super().forward(features[-1])


class EncoderDecoder(nn.Module):
    """A model of one's own in SMP's shape: encoder (with out_channels) -> decoder -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.ModuleList([nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)])
        self.encoder.out_channels = (3, 8, 16)
        self.decoder = LastFeature(16, 2, 1)

    def forward(self, x):
        features = [x]
        for stage in self.encoder:
            features.append(stage(features[-1]))
        return self.decoder(features)


def test_any_encoder_decoder_model_with_explicit_stages():
    model = EncoderDecoder()
    with pytest.raises(ValueError, match="stages="):
        add_sdn(model)
    add_sdn(model, stages=[1, 2], sdc_channels=None)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 2, 4, 4)
    assert model.sdn.stages == (1, 2)
