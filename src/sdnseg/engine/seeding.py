"""Per-sample augmentation randomness: each training item's draws depend on (seed, epoch, index).

Why. With torch's global generator, an item's augmentation depends on what was drawn before it:
on the main process (``num_workers=0``) the data fetcher's look-ahead interleaves augmentation
draws with dropout draws, and in worker processes each worker's generator is seeded once and
then advances with every item that worker happened to load. Neither survives a resume: the
resumed run loads the remaining items in another order of draws. Here the training sampler
yields *keys* ``epoch * len(dataset) + index`` (:class:`EpochKeyedSampler`) and
:class:`SeededItems` runs the item's transforms under a generator seeded from
``(seed, epoch, index)`` (:func:`sample_seed`), restoring the caller's generator afterwards: the
item is the same whichever worker loads it and whenever the run was resumed, and the global
generator is left to the model (dropout) alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sdnseg.engine.sampler import ResumableRandomSampler

__all__ = ["EpochKeyedSampler", "SeededItems", "sample_seed"]


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed mixing the three numbers (numpy's ``SeedSequence`` hash)."""
    words = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class EpochKeyedSampler(Sampler[int]):
    """Yield ``epoch * num_samples + index`` for each index of a :class:`ResumableRandomSampler`.

    ``set_epoch``, ``state_dict`` and ``load_state_dict`` are the wrapped sampler's.
    """

    def __init__(self, sampler: ResumableRandomSampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        offset = self.sampler.epoch * self.sampler.num_samples
        for index in self.sampler:
            yield offset + index

    def __len__(self) -> int:
        return len(self.sampler)

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


class SeededItems(Dataset):
    """``dataset[index]`` for a key ``epoch * len(dataset) + index``, with torch's CPU generator
    seeded from :func:`sample_seed` during the call and restored after it.

    Args:
        dataset: any map-style dataset whose transforms draw from torch's global generator.
        seed: the run's seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int) -> Any:
        epoch, index = divmod(int(key), len(self))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.dataset[index]

    def __getattr__(self, name: str) -> Any:
        # The wrapped dataset's classes, palette and the like stay reachable.
        if name in ("dataset", "seed"):
            raise AttributeError(name)
        return getattr(self.dataset, name)
