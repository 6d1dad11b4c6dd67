"""Per-iteration learning-rate schedules of the mmseg reference configs.

mmengine's ``PolyLR(eta_min, power, by_epoch=False)`` in closed form,
``lr(t) = (lr0 - eta_min) * (1 - t / T) ** power + eta_min``, optionally multiplied by a linear
warm-up factor that grows from ``warmup_ratio`` to 1 over the first ``warmup_steps`` iterations
(mmengine's ``LinearLR(start_factor=warmup_ratio, by_epoch=False)``).

The factor is a small callable dataclass rather than a closure so that ``LambdaLR.state_dict()``
stores its settings in the checkpoint (a closure would be silently dropped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["PolyWarmupFactor", "poly_lr", "poly_scheduler"]


def poly_lr(
    step: int,
    total_steps: int,
    base_lr: float,
    min_lr: float = 1e-4,
    power: float = 0.9,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
) -> float:
    """Learning rate at iteration ``step`` (0-based) of a poly schedule with linear warm-up.

    Past ``total_steps`` the rate stays at ``min_lr``.
    """
    progress = min(step, total_steps) / total_steps
    lr = (base_lr - min_lr) * (1.0 - progress) ** power + min_lr
    if step < warmup_steps:
        lr *= warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps
    return lr


@dataclass
class PolyWarmupFactor:
    """``LambdaLR`` factor ``poly_lr(step, ...) / base_lr`` for one parameter group.

    Args:
        total_steps: T, the iteration at which the rate reaches ``min_lr``.
        base_lr: the group's initial rate (lr0).
        min_lr: eta_min.
        power: poly exponent.
        warmup_steps: linear warm-up length (0 for none).
        warmup_ratio: warm-up start factor.
    """

    total_steps: int
    base_lr: float
    min_lr: float = 1e-4
    power: float = 0.9
    warmup_steps: int = 0
    warmup_ratio: float = 1e-6

    def __post_init__(self) -> None:
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be positive, got {self.total_steps}")
        if self.base_lr <= 0:
            raise ValueError(f"base_lr must be positive, got {self.base_lr}")
        if self.warmup_steps < 0 or not 0 < self.warmup_ratio <= 1:
            raise ValueError(
                f"need warmup_steps >= 0 and 0 < warmup_ratio <= 1, got {self.warmup_steps}, "
                f"{self.warmup_ratio}"
            )

    def __call__(self, step: int) -> float:
        return poly_lr(step, **asdict(self)) / self.base_lr


def poly_scheduler(
    optimizer: Optimizer,
    total_steps: int,
    min_lr: float = 1e-4,
    power: float = 0.9,
    warmup_steps: int = 0,
    warmup_ratio: float = 1e-6,
) -> LambdaLR:
    """A ``LambdaLR`` applying :class:`PolyWarmupFactor` to every parameter group; step it per
    iteration. A group's ``lr_mult`` (:func:`sdnseg.engine.finetune.parameter_groups`) scales
    its ``min_lr`` too."""
    factors = [
        PolyWarmupFactor(
            total_steps,
            group["lr"],
            min_lr * group.get("lr_mult", 1.0),
            power,
            warmup_steps,
            warmup_ratio,
        )
        for group in optimizer.param_groups
    ]
    return LambdaLR(optimizer, factors)
