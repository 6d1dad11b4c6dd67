import os

import pytest

from sdnseg.io import TEMP_MARKER, atomic_write


def test_atomic_write_replaces_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "report.json"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json"
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert os.listdir(target.parent) == ["report.json"]


def test_atomic_write_keeps_old_content_when_the_writer_fails(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert not any(TEMP_MARKER in name for name in os.listdir(tmp_path))


def test_atomic_write_names_a_missing_write_and_a_directory_target(tmp_path):
    with (
        pytest.raises(FileNotFoundError, match="nothing was written"),
        atomic_write(tmp_path / "x.png", fsync=False),
    ):
        pass
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(IsADirectoryError, match="is a directory"), atomic_write(tmp_path):
        pass
