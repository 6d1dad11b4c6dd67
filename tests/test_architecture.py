"""The package layering of docs/architecture.md, as import-linter contracts in pyproject.toml."""

from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="the test extra installs import-linter")
from importlinter.cli import lint_imports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    assert (
        lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
    )


def test_a_broken_layering_is_reported(tmp_path):
    # The same tool on the real tree with the floors upside down must fail: the contracts can.
    config = tmp_path / "upside_down.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "sdnseg"\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "upside down"\ntype = "layers"\nlayers = ["sdnseg.nn", "sdnseg.models"]\n'
    )
    assert lint_imports(config_filename=str(config), no_cache=True, no_logo=True) != 0
