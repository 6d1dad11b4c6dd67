"""Inference is usable without the training stack: no Lightning on the import path."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run in a fresh interpreter (this process has Lightning loaded by other tests). On the first
# import of a training package, the finder notes which sdnseg modules were importing, outermost
# first, so that a failure names the culprit.
PROBE = """
import sys, traceback
TRAINING = ("lightning", "pytorch_lightning", "lightning_fabric")
chains = []
class Witness:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING and not chains:
            frames = traceback.walk_stack(None)
            names = [frame.f_globals.get("__name__", "") for frame, _ in frames]
            chains.append([n for n in reversed(names) if n.startswith("sdnseg")])
        return None
sys.meta_path.insert(0, Witness())
{statement}
print(" -> ".join(chains[0]) + " -> lightning" if chains else "clean")
"""


@pytest.mark.parametrize(
    "statement",
    ["import sdnseg.inference", "import sdnseg; sdnseg.load_model"],
    ids=["inference", "load_model"],
)
def test_inference_does_not_import_lightning(statement):
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(statement=statement)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean", f"imported through {result.stdout.strip()}"
