"""``sdnseg export`` checks its target before the (slow) export and names it on failure."""

from __future__ import annotations

from sdnseg.export import main


def test_an_existing_folder_as_output_is_refused_before_exporting(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    args = ["--arch", "fcn_r18d8", "--num_classes", "2", "--input_size", "32", "32"]
    assert main([*args, "--output", str(folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {folder}: it is a directory")
    assert list(folder.iterdir()) == []


def test_an_unwritable_target_is_named(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "model.onnx"
    args = ["--arch", "fcn_r18d8", "--num_classes", "2", "--input_size", "32", "32"]
    assert main([*args, "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {target}: {blocker} is a file")
