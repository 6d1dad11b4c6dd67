"""InverseForm's inverse-transformation network (Borse et al., "InverseForm: A Loss Function for
Structured Boundary-Aware Segmentation", CVPR 2021).

An MLP reads two edge maps of ``size × size`` pixels (flattened and concatenated: ``2·size²`` →
1000 → 32 → 4 in the public code, ``size`` 224) and regresses the transformation between them. Its
four outputs are read here as a similarity transform ``θ = (s, r, t_x, t_y)``:

    A(θ) = [[1 + s, −r, t_x],
            [r, 1 + s, t_y]]

in ``F.affine_grid``'s normalised coordinates (−1…1 across the map), so that ``θ = 0`` is the
identity; :meth:`InverseTransformNet.forward` ``(a, b)`` predicts ``θ`` with ``a ≈ warp(b, θ)``.
The paper's distance (Sec. 3.2) is the Frobenius norm of the predicted transform minus the
identity, ``‖A(θ) − [I | 0]‖_F`` (:func:`transform_distance`). The network is trained on
ground-truth edge maps under random transforms (:mod:`sdnseg.engine.inverseform`), then frozen
inside :class:`~sdnseg.models.losses.InverseFormLoss`.

Checkpoints (:func:`save_inverse_net` / :func:`load_inverse_net`) are plain ``torch.save`` dicts
with a ``format`` tag, the input ``size`` and hidden widths, so a network trained at a lower
resolution (the tests use 32) is rebuilt at that resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdnseg.io import atomic_write

FORMAT = "sdnseg.inverse_net"
PARAMS = 4  # s, r, t_x, t_y


class InverseTransformNet(nn.Module):
    """The MLP of InverseForm.

    Args:
        size: side of the square edge maps it reads (224 in the paper).
        hidden: widths of the hidden layers ((1000, 32) in the public code).

    Shape:
        a, b (N, 1, size, size) or (N, size, size) -> θ (N, 4)
    """

    def __init__(self, size: int = 224, hidden: Sequence[int] = (1000, 32)) -> None:
        super().__init__()
        if size < 1 or not hidden:
            raise ValueError(f"size must be positive and hidden non-empty, got {size}, {hidden}")
        self.size, self.hidden = int(size), tuple(int(h) for h in hidden)
        widths = [2 * self.size * self.size, *self.hidden]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [nn.Linear(c_in, c_out), nn.ReLU(inplace=True)]
        self.fc = nn.Sequential(*layers, nn.Linear(widths[-1], PARAMS))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        expected = (self.size, self.size)
        if tuple(a.shape[-2:]) != expected or a.shape != b.shape:
            raise ValueError(
                f"InverseTransformNet reads two {self.size}x{self.size} edge maps, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            )
        n = a.shape[0]
        return self.fc(torch.cat([a.reshape(n, -1), b.reshape(n, -1)], dim=1))


def similarity_matrix(theta: torch.Tensor) -> torch.Tensor:
    """A(θ) of the module doc: (N, 4) -> (N, 2, 3)."""
    s, r, tx, ty = theta.unbind(dim=1)
    one = 1 + s
    return torch.stack([torch.stack([one, -r, tx], 1), torch.stack([r, one, ty], 1)], 1)


def transform_distance(theta: torch.Tensor) -> torch.Tensor:
    """The InverseForm distance ``‖A(θ) − [I | 0]‖_F`` of each transform: (N, 4) -> (N,)."""
    identity = similarity_matrix(torch.zeros_like(theta))
    return (similarity_matrix(theta) - identity).flatten(1).norm(dim=1)


def warp(edges: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``warp(b, θ)(x) = b(A(θ) x)`` by bilinear sampling, zeros outside: (N, 1, H, W) -> same."""
    grid = F.affine_grid(similarity_matrix(theta).to(edges.dtype), list(edges.shape), False)
    return F.grid_sample(edges, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_similarity(
    n: int,
    max_scale: float = 0.1,
    max_rotation: float = 0.1,
    max_shift: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """θ drawn uniformly within ``±max_scale``, ``±max_rotation`` (r ≈ sin of the angle) and
    ``±max_shift`` (normalised units: 0.1 is 5% of the map's side): (n, 4)."""
    limits = torch.tensor([max_scale, max_rotation, max_shift, max_shift])
    return (torch.rand(n, PARAMS, generator=generator) * 2 - 1) * limits


def tiles(edges: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to a grid of ``size × size`` tiles and cut: (N, 1, H, W) -> (N·rows·cols, 1, size,
    size), ``rows = max(1, round(H / size))`` (and likewise ``cols``), as the public code cuts
    672×1344 maps into 3×6 tiles of 224."""
    n, _, height, width = edges.shape
    rows, cols = max(1, round(height / size)), max(1, round(width / size))
    if (height, width) != (rows * size, cols * size):
        edges = F.interpolate(
            edges, (rows * size, cols * size), mode="bilinear", align_corners=False
        )
    grid = edges.reshape(n, 1, rows, size, cols, size).permute(0, 2, 4, 1, 3, 5)
    return grid.reshape(n * rows * cols, 1, size, size)


def save_inverse_net(net: InverseTransformNet, path: str | Path, **meta: Any) -> Path:
    """Write ``net`` (and ``meta``, e.g. its training settings and error) atomically."""
    record = {
        "format": FORMAT,
        "size": net.size,
        "hidden": list(net.hidden),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": meta,
    }
    with atomic_write(path) as temp:
        torch.save(record, temp)
    return Path(path)


def load_inverse_net(path: str | Path) -> InverseTransformNet:
    """The frozen network saved at ``path`` (eval mode, no gradients to its parameters).

    Raises:
        FileNotFoundError: ``path`` does not exist (names it and the command that writes one).
        ValueError: ``path`` is not an inverse-net checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"inverse-net checkpoint {path} does not exist; train one with "
            f"`sdnseg train_inverseform --data <name> --root <dataset> --output {path}`"
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix
        raise ValueError(f"{path} is not a readable inverse-net checkpoint: {err}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not an inverse-net checkpoint (no format {FORMAT!r}); write one with "
            "`sdnseg train_inverseform`"
        )
    net = InverseTransformNet(record["size"], record["hidden"])
    net.load_state_dict(record["state_dict"])
    net.requires_grad_(False)
    return net.eval()
