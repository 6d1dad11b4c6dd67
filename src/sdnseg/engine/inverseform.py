"""``sdnseg train_inverseform``: train InverseForm's inverse-transformation network (Borse et al.,
CVPR 2021, Sec. 3.1) on the ground-truth boundaries of a training split.

Recipe: the masks of the split become edge maps (:func:`~sdnseg.models.losses.edge_targets`,
the edges the segmentation loss compares); each step draws random ``crop × crop`` windows holding
some edge, resized to the network's ``size``, warps each by a random similarity transform
(:func:`~sdnseg.models.inverseform.random_similarity`) and regresses the transform from the
(warped, original) pair with a mean squared error on ``θ`` scaled by its range, Adam. The held-back
split's maps give the error reported and stored in the checkpoint (``meta``): the mean absolute
error of ``θ`` beside that of predicting the identity. The checkpoint is written atomically and
then loaded, frozen, by :class:`~sdnseg.models.losses.InverseFormLoss`::

    sdnseg train_inverseform --data camvid --root ../shared/data/camvid --output runs/inverse_net.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sdnseg.data import IGNORE_INDEX, build_dataset
from sdnseg.models.inverseform import (
    InverseTransformNet,
    random_similarity,
    save_inverse_net,
    warp,
)
from sdnseg.models.losses import edge_targets

__all__ = ["InverseNetRecipe", "edge_maps", "evaluate_inverse_net", "main", "train_inverse_net"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InverseNetRecipe:
    """Settings of :func:`train_inverse_net` (the defaults are the paper's network at 224²)."""

    size: int = 224
    hidden: tuple[int, ...] = (1000, 32)
    crop: int | None = None  # window side in mask pixels; None: ``size``
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-4
    max_scale: float = 0.1
    max_rotation: float = 0.1
    max_shift: float = 0.1
    radius: int = 2
    seed: int = 0

    @property
    def scale(self) -> torch.Tensor:
        """The range of each parameter (1 where it is fixed at 0), to balance the regression."""
        limits = torch.tensor([self.max_scale, self.max_rotation, self.max_shift, self.max_shift])
        return torch.where(limits > 0, limits, torch.ones_like(limits))


def edge_maps(
    masks: Sequence[torch.Tensor], radius: int = 2, ignore_index: int = IGNORE_INDEX
) -> list[torch.Tensor]:
    """One (1, H, W) bool edge map per mask (masks may differ in size)."""
    return [edge_targets(m.unsqueeze(0), radius, ignore_index)[0][0].bool() for m in masks]


def _windows(
    maps: Sequence[torch.Tensor], count: int, recipe: InverseNetRecipe, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random windows holding at least one edge pixel, as (count, 1, size, size)."""
    crop = recipe.crop or recipe.size
    picked: list[torch.Tensor] = []
    for _ in range(100 * count):
        if len(picked) == count:
            break
        edges = maps[int(torch.randint(len(maps), (1,), generator=generator))]
        height, width = edges.shape[-2:]
        side = min(crop, height, width)
        y = int(torch.randint(height - side + 1, (1,), generator=generator))
        x = int(torch.randint(width - side + 1, (1,), generator=generator))
        window = edges[:, y : y + side, x : x + side]
        if window.any():
            picked.append(window.float())
    if len(picked) < count:
        raise ValueError("the edge maps hold too few edges to draw training windows from")
    size = (recipe.size, recipe.size)
    return torch.stack([F.interpolate(w[None], size, mode="area")[0] for w in picked])


def _pairs(
    maps: Sequence[torch.Tensor], count: int, recipe: InverseNetRecipe, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(warped, original, θ) of ``count`` random windows."""
    original = _windows(maps, count, recipe, generator)
    theta = random_similarity(
        count, recipe.max_scale, recipe.max_rotation, recipe.max_shift, generator
    )
    return warp(original, theta), original, theta


def train_inverse_net(
    maps: Sequence[torch.Tensor], recipe: InverseNetRecipe = InverseNetRecipe()
) -> InverseTransformNet:
    """A network trained on random transforms of ``maps`` (see the module doc)."""
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    net = InverseTransformNet(recipe.size, recipe.hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    scale = recipe.scale
    start = time.perf_counter()
    for step in range(recipe.steps):
        warped, original, theta = _pairs(maps, recipe.batch_size, recipe, generator)
        loss = F.mse_loss(net(warped, original) / scale, theta / scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(1, recipe.steps // 10) == 0 or step == recipe.steps - 1:
            logger.info("step %d/%d loss %.4f (%.0fs)", step + 1, recipe.steps, loss.item(),
                        time.perf_counter() - start)  # fmt: skip
    return net.eval()


@torch.no_grad()
def evaluate_inverse_net(
    net: InverseTransformNet,
    maps: Sequence[torch.Tensor],
    recipe: InverseNetRecipe,
    count: int = 256,
    seed: int = 1,
) -> dict[str, Any]:
    """Mean absolute error of θ on ``count`` random pairs of ``maps``, per parameter, beside the
    error of predicting the identity (``θ = 0``)."""
    generator = torch.Generator().manual_seed(seed)
    warped, original, theta = _pairs(maps, count, recipe, generator)
    error = (net.eval()(warped, original) - theta).abs().mean(dim=0)
    identity = theta.abs().mean(dim=0)
    return {
        "pairs": count,
        "mae": [round(v, 5) for v in error.tolist()],
        "identity_mae": [round(v, 5) for v in identity.tolist()],
        "relative": round(float(error.sum() / identity.sum()), 4),
    }


def _masks(name: str, root: str | None, split: str, options: dict[str, Any]) -> list[torch.Tensor]:
    dataset = build_dataset(name, root, split, **options)
    return [dataset[i]["mask"].as_subclass(torch.Tensor) for i in range(len(dataset))]


def main(argv: Sequence[str] | None = None) -> int:
    """``sdnseg train_inverseform``; returns the exit code."""
    defaults = InverseNetRecipe()
    parser = argparse.ArgumentParser(
        prog="sdnseg train_inverseform",
        description="Train InverseForm's inverse-transformation network on ground-truth edges.",
    )
    parser.add_argument("--data", required=True, help="dataset name (camvid, cityscapes, ...)")
    parser.add_argument("--root", default=None, help="dataset folder (not for synthetic)")
    parser.add_argument("--data-options", default="{}", help="JSON dataset options")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val", help="held-back maps for the error")
    parser.add_argument("--output", required=True, help="checkpoint to write (atomically)")
    for field, value in asdict(defaults).items():
        if field == "hidden":
            parser.add_argument("--hidden", type=int, nargs="+", default=list(value))
        else:
            kind = (
                int if field in ("size", "crop", "steps", "batch_size", "radius", "seed") else float
            )
            parser.add_argument(f"--{field.replace('_', '-')}", type=kind, default=value)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = InverseNetRecipe(**{k: getattr(args, k) for k in asdict(defaults) if k != "hidden"},
                              hidden=tuple(args.hidden))  # fmt: skip
    try:
        options = json.loads(args.data_options)
        train = edge_maps(_masks(args.data, args.root, args.train_split, options), recipe.radius)
        held = edge_maps(_masks(args.data, args.root, args.val_split, options), recipe.radius)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    net = train_inverse_net(train, recipe)
    report = evaluate_inverse_net(net, held, recipe)
    meta = {"recipe": asdict(recipe), "data": args.data, "held_back": args.val_split, **report}
    save_inverse_net(net, args.output, **meta)
    print(json.dumps({"output": args.output, **report}))
    return 0
