"""Boundary F-score as a torchmetrics ``Metric`` (DAVIS / GSCNN / SegFix definition).

The per-(image, class) F, precision and recall of :func:`sdnseg.metrics.functional.boundary_scores`
are summed per class together with the number of counted images; ``compute()`` divides, so the
per-class score is the mean over images and the headline score the mean over classes, as in
GSCNN's ``eval_mask_boundary`` and openseg's ``F1RunningScore``
(see ``docs/metrics.md``).
All states are sums (``dist_reduce_fx="sum"``), so DDP synchronisation is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric

from sdnseg.metrics import functional as MF


class BoundaryFScore(Metric):
    """Mean boundary F per tolerance, plus per-class F, precision and recall.

    For each tolerance ``t`` with name ``s`` (``"1px"`` for ``t >= 1``, ``"0.00088"`` for a
    fraction of the image diagonal, rounded up to whole pixels) ``compute()`` returns
    ``"BF@s"`` (0-d float32, mean over classes) and ``"F@s"``, ``"P@s"``, ``"R@s"`` ((C,) float32,
    mean over images). Values are fractions in [0, 1].

    Args:
        num_classes: C.
        tolerances: one or more matching distances: >= 1 in pixels (Euclidean, so 1.5 is allowed),
            < 1 as a fraction of the image diagonal.
        ignore_index: void label of the target: background in both maps, so a class touching void
            has a target boundary there (as in GSCNN / SegFix). None for no void.
        absent: ``"one"`` counts an (image, class) pair with no boundary in either map as
            F = P = R = 1 (GSCNN / SegFix); ``"skip"`` leaves it out of the means, and a class with
            no counted image is NaN and left out of the class mean.
        **kwargs: passed to :class:`torchmetrics.Metric`.

    Shape:
        ``update(preds, target)``: preds class ids (N, H, W) or scores (N, C, H, W) (argmax over
        dim 1); target class ids (N, H, W).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    f_sum: torch.Tensor
    p_sum: torch.Tensor
    r_sum: torch.Tensor
    count: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        tolerances: float | Sequence[float] = (1, 3),
        ignore_index: int | None = 255,
        absent: str = "one",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        MF.check_num_classes(num_classes)
        MF.check_ignore_index(ignore_index, num_classes)
        if absent not in MF.ABSENT_MODES:
            raise ValueError(f"absent must be one of {MF.ABSENT_MODES}, got {absent!r}")
        tolerances = (tolerances,) if isinstance(tolerances, int | float) else tuple(tolerances)
        if not tolerances:
            raise ValueError("tolerances must name at least one tolerance, got ()")
        names = [MF.tolerance_name(t) for t in tolerances]
        if len(set(names)) != len(names):
            raise ValueError(f"tolerances must be distinct, got {tolerances!r}")
        self.num_classes = num_classes
        self.tolerances = tolerances
        self.names = names
        self.ignore_index = ignore_index
        self.absent = absent
        shape = (len(tolerances), num_classes)
        # float64: these sums run over whole validation sets and are merged across processes.
        for name in ("f_sum", "p_sum", "r_sum"):
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(shape, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Score every image of the batch at every tolerance and add to the sums."""
        scores = MF.boundary_scores(
            preds, target, self.num_classes, self.tolerances, self.ignore_index
        )
        f, p, r, n = MF.reduce_boundary_scores(scores, self.absent)
        self.f_sum += f
        self.p_sum += p
        self.r_sum += r
        self.count += n

    def compute(self) -> dict[str, torch.Tensor]:
        """Per-class means over images and their mean over classes, per tolerance."""
        out: dict[str, torch.Tensor] = {}
        for k, name in enumerate(self.names):
            f = MF.mean_or_nan(self.f_sum[k], self.count[k])
            out[f"BF@{name}"] = torch.nanmean(f).float()
            out[f"F@{name}"] = f.float()
            out[f"P@{name}"] = MF.mean_or_nan(self.p_sum[k], self.count[k]).float()
            out[f"R@{name}"] = MF.mean_or_nan(self.r_sum[k], self.count[k]).float()
        return out
