"""Hub-style save and load of zoo segmentors: a local folder round trip, offline, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from sdnseg.models import Segmentor, create_model
from sdnseg.models.hub import CONFIG_KEYS

TINY = {"backbone": "resnet10t", "backbone_kwargs": {}}
CLASSES = ["road", "car", "sky"]


def tiny_model(name: str = "semfpn_r18_sdn") -> Segmentor:
    model = create_model(name, 3, **TINY, sdc_channels=8, guidance_channels=8)
    model.train()
    for _ in range(2):  # BatchNorm statistics off their initial values: they are saved too
        model(torch.randn(2, 3, 64, 64))
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model()
    folder = tmp_path_factory.mktemp("hub") / "semfpn"
    model.save_pretrained(folder, classes=CLASSES, base_size=(64, 96), metrics={"val/mIoU": 0.25})
    return model, folder


def test_round_trip_gives_the_same_logits_and_metadata(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert set(config) == set(CONFIG_KEYS)
    assert config["arch"] == "semfpn_r18_sdn" and config["classes"] == CLASSES
    assert config["overrides"] == {**TINY, "sdc_channels": 8, "guidance_channels": 8}
    reloaded = Segmentor.from_pretrained(folder)
    assert not reloaded.training and reloaded.config == model.config
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))
    assert reloaded.hub_metadata["base_size"] == [64, 96]
    # A second save keeps the metadata it was loaded with, and rewrites the card.
    again = folder.parent / "again"
    reloaded.save_pretrained(again)
    assert json.loads((again / "config.json").read_text()) == config


def test_model_card_lists_the_metrics_and_classes(saved):
    _, folder = saved
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: sdnseg" in card
    assert "| val/mIoU | 0.2500 |" in card and "`sky`" in card
    assert "Segmentor.from_pretrained" in card


def test_defaults_without_metadata(tmp_path):
    model = create_model("fcn_r18d8", 4, **TINY)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["classes"] == [f"class{i}" for i in range(4)] and len(config["palette"]) == 4
    assert config["metrics"] == {} and "No metrics" in (tmp_path / "README.md").read_text()


def test_bad_folders_name_the_file_and_key(saved, tmp_path):
    model, folder = saved
    with pytest.raises(FileNotFoundError, match=r"empty/config\.json not found"):
        (tmp_path / "empty").mkdir()
        Segmentor.from_pretrained(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        Segmentor.from_pretrained(tmp_path / "missing" / "model")

    def edited(name: str, **changes) -> str:
        target = tmp_path / name
        target.mkdir()
        (target / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        config = {**json.loads((folder / "config.json").read_text()), **changes}
        (target / "config.json").write_text(json.dumps(config))
        return target

    with pytest.raises(ValueError, match=r"unknown/config\.json: 'arch' names 'nope'"):
        Segmentor.from_pretrained(edited("unknown", arch="nope"))
    with pytest.raises(ValueError, match=r"classes/config\.json: 'classes' must list 3"):
        Segmentor.from_pretrained(edited("classes", classes=["a", "b"]))
    with pytest.raises(ValueError, match=r"shape.*model\.safetensors|model\.safetensors.*shape"):
        Segmentor.from_pretrained(edited("shapes", overrides={**TINY, "sdc_channels": 16}))
    with pytest.raises(ValueError, match=r"model\.safetensors.*unexpected neck\."):
        Segmentor.from_pretrained(edited("baseline", arch="semfpn_r18", overrides=TINY))
    lacking = edited("lacking")
    config = json.loads((lacking / "config.json").read_text())
    del config["palette"]
    (lacking / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"lacking/config\.json lacks \['palette'\]"):
        Segmentor.from_pretrained(lacking)


def test_save_refuses_what_cannot_be_rebuilt_or_described(tmp_path):
    model = create_model("fcn_r18d8", 3, **TINY)
    with pytest.raises(ValueError, match="'palette' must list 3"):
        model.save_pretrained(tmp_path, palette=[(0, 0, 0)])
    model.config = None
    with pytest.raises(ValueError, match="needs a zoo model"):
        model.save_pretrained(tmp_path)
