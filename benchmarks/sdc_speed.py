"""SDC (Eq. 5) speed and memory on the CPU against F.conv2d of the same shape.

For each (N, Ci -> Co, H x W, k, dilation) with Cf = Ci and gradients into u, v and weight:
forward time, forward+backward time, and the bytes autograd keeps for backward, for
``F.conv2d`` on NCHW input (the anchor) and on channels-last input, sdnseg's three-GEMM path
(``backend="torch"``), and the naive unfold formulation. The three-GEMM floor is the time of
``torch.mm`` for the forward GEMM and the two backward GEMMs at D's shape ((Co, K·Ci) times
(K·Ci, N·H·W)), with D built beforehand: what the SDC would cost if its element-wise work
were free.

    python benchmarks/sdc_speed.py            # writes benchmarks/results/sdc_speed.{json,md}
    python benchmarks/sdc_speed.py --quick    # one small shape, nothing written
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median_time, write_results  # noqa: E402
from sdnseg.nn.functional import semantic_difference_conv2d  # noqa: E402

SHAPES = [
    # (N, Ci, Co, H, W, k, dilation)
    (2, 256, 256, 64, 64, 3, 1),
    (2, 512, 512, 45, 60, 3, 1),
    (8, 128, 128, 45, 60, 3, 1),
    (1, 64, 64, 128, 128, 3, 1),
    (2, 256, 256, 64, 64, 5, 1),
    (2, 256, 256, 64, 64, 3, 3),
]


def naive_unfold_sdc(u, v, weight, dilation, lam=1.0):
    """The plain-autograd formulation: unfold U and V, multiply, one einsum."""
    n, ci, h, w = u.shape
    co, _, kh, kw = weight.shape
    pad = ((kh // 2) * dilation, (kw // 2) * dilation)
    k = kh * kw

    def unfold(x):
        cols = F.unfold(x, (kh, kw), dilation=dilation, padding=pad)
        return cols.view(x.shape[0], x.shape[1], k, h * w)

    inside = unfold(u.new_ones(1, 1, h, w))
    uu, vv = unfold(u), unfold(v)
    d2 = (vv - v.view(n, -1, 1, h * w)).square().mean(1, keepdim=True)
    s = torch.rsqrt(1 + d2 / lam**2) * inside
    diff = (uu - u.view(n, ci, 1, h * w)) * s
    y = torch.einsum("ock,nckp->nop", weight.view(co, ci, k), diff)
    return y.view(n, co, h, w)


def saved_bytes(fn, *inputs) -> int:
    """Bytes of the distinct storages autograd saves for backward while running ``fn``."""
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return sum(storages.values())


def measure(shape, repeats: int) -> dict:
    n, ci, co, h, w, k, dil = shape
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, ci, h, w, generator=g, requires_grad=True)
    v = torch.randn(n, ci, h, w, generator=g, requires_grad=True)
    weight = (torch.randn(co, ci, k, k, generator=g) / (ci * k * k) ** 0.5).requires_grad_(True)
    grad_y = torch.randn(n, co, h, w, generator=g)
    pad = (k // 2) * dil
    channels_last = torch.channels_last

    impls = {
        "conv2d": lambda u, v, w: F.conv2d(u, w, padding=pad, dilation=dil),
        "conv2d_channels_last": lambda u, v, w: F.conv2d(
            u.to(memory_format=channels_last),
            w.to(memory_format=channels_last),
            padding=pad,
            dilation=dil,
        ),
        "sdc": lambda u, v, w: semantic_difference_conv2d(u, v, w, dilation=dil, backend="torch"),
        "naive_unfold": lambda u, v, w: naive_unfold_sdc(u, v, w, dil),
    }
    row = {"shape": dict(zip(["N", "Ci", "Co", "H", "W", "k", "dilation"], shape, strict=True))}
    for name, fn in impls.items():
        row[name] = _measure_one(fn, (u, v, weight), grad_y, repeats)
    row["three_gemm_floor_s"] = three_gemm_floor(n * h * w, k * k - 1, ci, co, repeats)
    anchor = row["conv2d"]
    for name in ("conv2d_channels_last", "sdc", "naive_unfold"):
        row[name]["ratio_forward"] = row[name]["forward_s"] / anchor["forward_s"]
        row[name]["ratio_forward_backward"] = (
            row[name]["forward_backward_s"] / anchor["forward_backward_s"]
        )
        row[name]["ratio_saved"] = row[name]["saved_bytes"] / anchor["saved_bytes"]
    row["three_gemm_floor_ratio"] = row["three_gemm_floor_s"] / anchor["forward_backward_s"]
    row["sdc"]["ratio_to_floor"] = row["sdc"]["forward_backward_s"] / row["three_gemm_floor_s"]
    return row


def three_gemm_floor(pixels: int, taps: int, ci: int, co: int, repeats: int) -> float:
    """Seconds of ``Y = W·D``, ``G = Wᵀ·dY`` and ``dW = dY·Dᵀ`` with D (K·Ci, pixels) given."""
    g = torch.Generator().manual_seed(1)
    d = torch.randn(taps * ci, pixels, generator=g)
    w = torch.randn(co, taps * ci, generator=g)
    dy = torch.randn(co, pixels, generator=g)
    y, gk, dw = torch.empty(co, pixels), torch.empty(taps * ci, pixels), torch.empty_like(w)

    def gemms():
        torch.mm(w, d, out=y)
        torch.mm(w.t(), dy, out=gk)
        torch.mm(dy, d.t(), out=dw)

    return median_time(gemms, repeats)


def _measure_one(fn, inputs: tuple[torch.Tensor, ...], grad_y: torch.Tensor, repeats: int) -> dict:
    def forward():
        with torch.no_grad():
            fn(*inputs)

    def forward_backward():
        fn(*inputs).backward(grad_y)
        for t in inputs:
            t.grad = None

    return {
        "forward_s": median_time(forward, repeats),
        "forward_backward_s": median_time(forward_backward, repeats),
        "saved_bytes": saved_bytes(fn, *inputs),
    }


def markdown(rows: list[dict], env: dict) -> str:
    lines = [
        "# SDC speed on the CPU (ratios to `F.conv2d` on NCHW input, lower is better)",
        "",
        f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}; float32, Cf = Ci,",
        'gradients into u, v and weight; SDC is the three-GEMM path (`backend="torch"`).',
        "Floor: the three GEMMs alone at D's shape (fwd+bwd). Targets (issue 17): SDC fwd+bwd",
        "<= 1.8x conv where Ci >= 256, <= 2.5x everywhere, <= 1.25x the floor.",
        "",
        "| N, Ci->Co, HxW, k, d | conv fwd / fwd+bwd (ms) | conv CL fwd+bwd | floor "
        "| SDC fwd | SDC fwd+bwd | SDC / floor | SDC saved | naive fwd+bwd | naive saved |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, c, sdc = r["shape"], r["conv2d"], r["sdc"]
        lines.append(
            f"| {s['N']}, {s['Ci']}->{s['Co']}, {s['H']}x{s['W']}, {s['k']}x{s['k']}, d{s['dilation']} "
            f"| {c['forward_s'] * 1e3:.1f} / {c['forward_backward_s'] * 1e3:.1f} "
            f"| {r['conv2d_channels_last']['ratio_forward_backward']:.2f}x "
            f"| {r['three_gemm_floor_ratio']:.2f}x "
            f"| {sdc['ratio_forward']:.2f}x | {sdc['ratio_forward_backward']:.2f}x "
            f"| {sdc['ratio_to_floor']:.2f}x | {sdc['ratio_saved']:.2f}x "
            f"| {r['naive_unfold']['ratio_forward_backward']:.2f}x "
            f"| {r['naive_unfold']['ratio_saved']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one small shape, no files written")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [(1, 32, 32, 16, 16, 3, 1)] if args.quick else SHAPES
    rows = []
    for shape in shapes:
        rows.append(measure(shape, args.repeats))
        print(markdown(rows[-1:], environment()).splitlines()[-1], flush=True)
    env = environment()
    if not args.quick:
        write_results("sdc_speed", {"environment": env, "rows": rows}, markdown(rows, env))


if __name__ == "__main__":
    main()
