"""Unreadable and non-finite checkpoints: one line naming the file and the reason, everywhere
(load_model, the CLI's mapped read, export, resume)."""

from __future__ import annotations

import os

import pytest
import torch

from sdnseg.engine.cli import main as cli_main
from sdnseg.export import main as export_main
from sdnseg.inference import load_model
from sdnseg.inference.checkpoint import read_checkpoint

from .conftest import todays_checkpoint


def bad_files(tmp_path, good):
    data = good.read_bytes()
    files = {
        "empty": (b"", "the file is empty"),
        "truncated": (data[: len(data) // 2], "truncated or damaged"),
        "garbage": (os.urandom(4096), "not a PyTorch checkpoint"),
        "text": (b"hello world\n" * 100, "not a PyTorch checkpoint"),
    }
    for name, (content, _) in files.items():
        (tmp_path / f"{name}.ckpt").write_bytes(content)
    return {tmp_path / f"{name}.ckpt": reason for name, (_, reason) in files.items()}


@pytest.mark.parametrize("mmap", [False, True])
def test_load_model_and_the_mapped_read_name_file_and_reason(checkpoint_path, tmp_path, mmap):
    for path, reason in bad_files(tmp_path, checkpoint_path).items():
        with pytest.raises(ValueError) as info:
            if mmap:
                read_checkpoint(path, mmap=True)
            else:
                load_model(path)
        message = str(info.value)
        assert message.startswith(f"cannot read checkpoint {path}") and reason in message
        assert "\n" not in message


def test_export_and_resume_give_one_line(checkpoint_path, tmp_path, capsys):
    for path, reason in bad_files(tmp_path, checkpoint_path).items():
        assert export_main(["--ckpt_path", str(path), "--output", str(tmp_path / "m.onnx")]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot read checkpoint {path}") and reason in err
        assert cli_main(["fit", "--ckpt_path", str(path), "--runs_dir", str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot read checkpoint {path}") and "Traceback" not in err


def test_load_model_refuses_non_finite_weights(tmp_path):
    checkpoint = todays_checkpoint()
    name = next(k for k in checkpoint["state_dict"] if k.endswith("running_var"))
    checkpoint["state_dict"][name][0] = float("inf")
    path = tmp_path / "diverged.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=rf"^{path} holds non-finite weights: {name} \(1 of"):
        load_model(path)
