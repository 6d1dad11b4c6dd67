"""ONNX export: every small named model, dynamic shapes checked with onnxruntime at another size."""

from __future__ import annotations

import onnx
import pytest
import torch

import sdnseg
from sdnseg.export import export_onnx, verify_onnx
from sdnseg.models import create_model

SMALL_MODELS = [
    "fcn_r18d8",
    "fcn_r18d8_sdn",
    "semfpn_r18",
    "semfpn_r18_sdn",
    "segmenter_vitt16",
    "segmenter_vitt16_sdn",
    "maskformer_efflite0",  # the semantic log-scores of the last decoder layer
    "maskformer_efflite0_sdn",
]
ATOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread_fixed_seed(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_export_matches_pytorch_at_another_size(tmp_path, name):
    model = create_model(name, 4)  # left in training mode: export must use eval
    path = export_onnx(model, tmp_path / f"{name}.onnx", input_size=(64, 64))
    assert path == tmp_path / f"{name}.onnx" and model.training
    graph = onnx.load(str(path)).graph
    assert _dims(graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(graph.output[0]) == ["batch", 4, "height", "width"]
    # 96×80 is not a multiple of the 32 or 64 size divisor: the padding and crop must follow it.
    assert verify_onnx(model, path, torch.randn(2, 3, 96, 80)) <= ATOL
    assert model.training


def test_ocrnet_export_matches_pytorch_relative_to_its_logits(tmp_path):
    """OCRNet's gather and attention export as matmuls and softmaxes. An untrained HRNet in eval
    mode (unit running variances) gives logits near 100, so float32 rounding is measured
    relative to their size."""
    model = create_model("ocrnet_hr18s", 4)  # the SDN neck exports in the models above
    path = export_onnx(model, tmp_path / "ocrnet.onnx", input_size=(64, 64))
    images = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        scale = model.eval()(images).abs().max().item()
    assert verify_onnx(model, path, images) <= 1e-5 * max(scale, 1.0)


def test_maskformer_on_swin_exports_with_dynamic_windows(tmp_path):
    """Swin's channels-last features, its window padding and MaskFormer's sine encoding follow
    the input size (maskformer_swin_b's layout on Swin-T, to keep the test small)."""
    model = create_model("maskformer_swin_b", 4, backbone="swin_tiny_patch4_window7_224")
    path = export_onnx(model, tmp_path / "swin.onnx", input_size=(64, 64))
    assert verify_onnx(model, path, torch.randn(1, 3, 96, 80)) <= ATOL


def test_vit_traced_at_its_own_grid_still_resizes_position_embedding(tmp_path):
    model = create_model("segmenter_vitt16", 4)  # position embedding 14×14 = 224 / 16
    path = export_onnx(model, tmp_path / "vit.onnx", input_size=(224, 224))
    assert verify_onnx(model, path, torch.randn(1, 3, 96, 80)) <= ATOL


def test_static_export_and_lazy_import(tmp_path):
    model = create_model("fcn_r18d8", 4).eval()
    path = sdnseg.export_onnx(model, tmp_path / "sub" / "static.onnx", (48, 40), dynamic=False)
    graph = onnx.load(str(path)).graph
    assert _dims(graph.input[0]) == [1, 3, 48, 40]
    assert _dims(graph.output[0]) == [1, 4, 48, 40]
    assert sdnseg.verify_onnx(model, path, torch.randn(1, 3, 48, 40)) <= ATOL
    assert not model.training


def test_failed_export_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def fail(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_onnx(create_model("fcn_r18d8", 4), path, (32, 32))
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_errors(tmp_path):
    model = create_model("fcn_r18d8", 4)
    with pytest.raises(ValueError, match="opset must be at least"):
        export_onnx(model, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="input_size"):
        export_onnx(model, tmp_path / "m.onnx", input_size=(64,))
    with pytest.raises(ValueError, match="Segmentor.*Conv2d"):
        export_onnx(torch.nn.Conv2d(3, 3, 1), tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        verify_onnx(model, tmp_path / "absent.onnx", torch.randn(1, 3, 32, 32))


def test_export_command_writes_and_checks(tmp_path, capsys):
    from sdnseg.engine.cli import main

    out = tmp_path / "m.onnx"
    args = ["export", "--arch", "fcn_r18d8_sdn", "--num_classes", "3", "--output", str(out)]
    assert main([*args, "--input_size", "64", "64"]) == 0
    assert out.is_file() and "max |diff|" in capsys.readouterr().out
    assert main(["export", "--ckpt_path", str(tmp_path / "none.ckpt"), "--output", str(out)]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
