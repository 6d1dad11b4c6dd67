"""ResumableRandomSampler: a per-epoch random order that a resumed run continues mid-epoch.

See :mod:`sdnseg.engine.datamodule` for how the data module keeps its position in checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["ResumableRandomSampler"]


class ResumableRandomSampler(Sampler[int]):
    """Random order per epoch, deterministic in ``(seed, epoch)``, resumable mid-epoch.

    ``set_epoch`` picks the permutation (Lightning calls it every epoch). The sampler counts the
    indices it has yielded in the current pass; ``state_dict`` returns ``{"epoch", "consumed",
    "seed", "num_samples"}`` and ``load_state_dict`` makes the next pass over that epoch start
    after ``consumed`` indices (a pass over any other epoch starts at 0). ``len`` is always the
    full ``num_samples`` so that loop lengths stay fixed across a resume.

    Args:
        num_samples: dataset length.
        seed: base seed; epoch ``e`` uses ``seed + e``.
        shuffle: False yields ``0..n-1`` in order (still resumable).
    """

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.num_samples, self.seed, self.shuffle = num_samples, seed, shuffle
        self.epoch = 0
        self.yielded = 0
        self._resume: tuple[int, int] | None = None  # (epoch, indices to skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> list[int]:
        """The full index order of ``epoch``."""
        if not self.shuffle:
            return list(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        start = 0
        if self._resume is not None and self._resume[0] == epoch:
            start = self._resume[1]
        self._resume = None
        self.yielded = start
        for index in self.order(epoch)[start:]:
            self.yielded += 1
            yield index

    def __len__(self) -> int:
        return self.num_samples

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "consumed": self.yielded,
            "seed": self.seed,
            "num_samples": self.num_samples,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("num_samples", self.num_samples) != self.num_samples:
            raise ValueError(
                f"sampler state is for {state['num_samples']} samples, "
                f"this dataset has {self.num_samples}"
            )
        consumed = int(state["consumed"])
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(f"consumed must be in 0..{self.num_samples}, got {consumed}")
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self._resume = (self.epoch, consumed)
