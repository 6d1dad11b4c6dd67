"""Shared fixtures of the model tests: one thread, fixed seed, tiny toy networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sdnseg.models import FCNHead, Segmentor


@pytest.fixture(autouse=True)
def _one_thread_fixed_seed():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


class ToyBackbone(nn.Module):
    """Two levels with ``channels`` / ``reductions``; per-pixel 1×1 convs with ``stride=1``."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        kernel = 3 if stride > 1 else 1
        self.stage1 = nn.Conv2d(3, 8, kernel, stride, kernel // 2)
        self.stage2 = nn.Conv2d(8, 16, kernel, stride, kernel // 2)
        self.channels = [8, 16]
        self.reductions = [stride, stride * stride]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        first = self.stage1(x).relu()
        return [first, self.stage2(first).relu()]


@pytest.fixture
def toy_segmentor():
    """Factory: a small FCN segmentor; ``stride=1`` makes it per-pixel (translation equivariant)."""

    def make(
        stride: int = 2, aux: bool = True, neck: nn.Module | None = None, **kwargs
    ) -> Segmentor:
        backbone = ToyBackbone(stride)
        norm = nn.BatchNorm2d
        head = FCNHead(
            16, 5, channels=8, num_convs=1, kernel_size=1 if stride == 1 else 3, norm_layer=norm
        )
        aux_head = (
            FCNHead(8, 5, channels=4, num_convs=1, concat_input=False, in_index=-2) if aux else None
        )
        return Segmentor(backbone, head, neck=neck, aux_head=aux_head, **kwargs)

    return make
