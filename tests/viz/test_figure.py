"""save_figure's contract, and figures that leave the user's matplotlib backend alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from PIL import Image

from sdnseg.viz import save_figure


def _figure() -> Figure:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    return fig


def test_save_figure_writes_the_format_of_the_suffix_atomically(tmp_path):
    path = save_figure(_figure(), tmp_path / "sub" / "line.png", dpi=50)
    assert path == tmp_path / "sub" / "line.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (100, 50)  # figsize × dpi
    assert save_figure(_figure(), tmp_path / "sub" / "line.pdf").read_bytes().startswith(b"%PDF")
    assert sorted(p.name for p in path.parent.iterdir()) == ["line.pdf", "line.png"]


def test_a_failed_save_leaves_the_previous_file_and_no_temp_file(tmp_path):
    path = save_figure(_figure(), tmp_path / "line.png")
    before = path.read_bytes()
    fig = _figure()

    def savefig_failing_halfway(tmp: Path, **kwargs) -> None:
        tmp.write_bytes(b"half a PNG")
        raise OSError("disk full")

    fig.savefig = savefig_failing_halfway
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, tmp_path / "line.png")
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["line.png"]


# Every viz figure, on tiny inputs, in a fresh interpreter: another test of the session may have
# imported pyplot already, and the backend can only be checked before anything chose one.
_MAKE_EVERY_FIGURE = """
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch

import sdnseg
from sdnseg.viz import save_figure
from sdnseg.viz.diffusion import diffusion_figure
from sdnseg.viz.metric_figures import confusion_figure, figure_png, trimap_figure
from sdnseg.viz.operator_responses import operator_response_figure
from sdnseg.viz.sdn_features import capture_sdn, sdn_figure
from sdnseg.viz.segmentation import comparison_figure

torch.set_num_threads(1)
out = Path(sys.argv[1])
before = matplotlib.get_backend()
rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
labels = np.zeros((32, 32), dtype=np.int64)
net = sdnseg.create_model(
    "fcn_r18d8_sdn", 3, backbone="resnet10t", backbone_kwargs={}, sdc_channels=8,
    guidance_channels=8,
).eval()
sdn_figure(out / "stages.png", rgb, capture_sdn(net, torch.randn(1, 3, 32, 32)))
operator_response_figure(out / "ops.png", rgb, guidance=torch.rand(3, 32, 32))
diffusion_figure(out / "diffusion.png", steps=1)
comparison_figure(out / "cmp.png", [rgb], [labels], {"a": [labels]}, [(0, 0, 0)])
save_figure(confusion_figure([[3, 1], [0, 2]], ["a", "b"]), out / "confusion.png")
assert figure_png(trimap_figure({"a": {1: 0.5, 4: 0.7}}))[1:4] == b"PNG"
print(before, matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_figures_never_switch_the_backend_nor_import_pyplot(tmp_path):
    env = {**os.environ, "MPLBACKEND": "svg"}  # a user's choice, not the Agg the PNGs need
    script = textwrap.dedent(_MAKE_EVERY_FIGURE)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "svg", "False"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cmp.png",
        "confusion.png",
        "diffusion.png",
        "ops.png",
        "stages.png",
    ]
