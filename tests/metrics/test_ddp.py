"""Every metric under DDP: two gloo processes on CPU, each updating with half of the data."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sdnseg.metrics import BoundaryFScore, BoundaryIoU, SegmentationMetrics, TrimapIoU


def _data():
    g = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, 5, (4, 1, 4, 5), generator=g).float()
    target = torch.nn.functional.interpolate(coarse, size=(16, 20), mode="nearest")[:, 0].long()
    pred = target.clone()
    flip = torch.rand(pred.shape, generator=g) < 0.1
    pred[flip] = torch.randint(0, 5, (int(flip.sum()),), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.05] = 255
    return pred, target


def _metrics():
    return [
        SegmentationMetrics(5),
        BoundaryFScore(5, tolerances=(1, 3)),
        BoundaryFScore(5, tolerances=(2,), absent="skip"),
        BoundaryIoU(5, dilation=2),
        TrimapIoU(5, widths=(1, 3)),
    ]


def _worker(rank: int, world_size: int, init_file: str) -> None:
    torch.set_num_threads(1)
    pred, target = _data()
    # The single-process result on all the data, before any process group exists.
    expected = []
    for m in _metrics():
        m.update(pred, target)
        expected.append(m.compute())
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        half = slice(rank * 2, rank * 2 + 2)
        for m, want in zip(_metrics(), expected, strict=True):
            # Uneven update calls per process: the sum states do not care.
            for i in range(half.start, half.stop, 1 + rank):
                m.update(pred[i : i + 1 + rank], target[i : i + 1 + rank])
            got = m.compute()
            assert got.keys() == want.keys()
            for key in want:
                torch.testing.assert_close(got[key], want[key], equal_nan=True, msg=key)
    finally:
        dist.destroy_process_group()


def test_ddp_sync_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)
