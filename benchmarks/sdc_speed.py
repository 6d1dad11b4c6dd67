"""SDC (Eq. 5) speed and memory on the CPU against F.conv2d of the same shape.

For each (N, Ci -> Co, H x W, k, dilation) with Cf = Ci and gradients into u, v and weight:
forward time, forward+backward time, and the bytes autograd keeps for backward, for
``F.conv2d`` (the anchor), sdnseg's fast path, and the naive unfold formulation.

    python benchmarks/sdc_speed.py            # writes benchmarks/results/sdc_speed.{json,md}
    python benchmarks/sdc_speed.py --quick    # one small shape, nothing written

``--compile`` (the default for a full run, off for ``--quick``) has the fast path
``torch.compile`` its element-wise kernels for the 3x3 shapes, as the committed results were
made: the library then compiled large 3x3 inputs on its own (every 3x3 shape here) and never a
5x5 kernel, whose 24 unrolled offsets take minutes to compile. Compilation is opt-in in the
library now; each row records whether it was on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, median_time, write_results  # noqa: E402
from sdnseg.nn.functional import sdc_backend, semantic_difference_conv2d  # noqa: E402

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


def measure(shape, repeats: int, compile: bool) -> dict:
    n, ci, co, h, w, k, dil = shape
    compile = compile and k == 3  # see the module docstring
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, ci, h, w, generator=g, requires_grad=True)
    v = torch.randn(n, ci, h, w, generator=g, requires_grad=True)
    weight = (torch.randn(co, ci, k, k, generator=g) / (ci * k * k) ** 0.5).requires_grad_(True)
    grad_y = torch.randn(n, co, h, w, generator=g)
    pad = (k // 2) * dil

    impls = {
        "conv2d": lambda u, v, w: F.conv2d(u, w, padding=pad, dilation=dil),
        "sdc": lambda u, v, w: semantic_difference_conv2d(u, v, w, dilation=dil),
        "naive_unfold": lambda u, v, w: naive_unfold_sdc(u, v, w, dil),
    }
    row = {"shape": dict(zip(["N", "Ci", "Co", "H", "W", "k", "dilation"], shape, strict=True))}
    with sdc_backend(compile=compile):
        for name, fn in impls.items():
            row[name] = _measure_one(fn, (u, v, weight), grad_y, repeats)
    row["sdc"]["compile"] = compile
    for name in ("sdc", "naive_unfold"):
        row[name]["ratio_forward"] = row[name]["forward_s"] / row["conv2d"]["forward_s"]
        row[name]["ratio_forward_backward"] = (
            row[name]["forward_backward_s"] / row["conv2d"]["forward_backward_s"]
        )
        row[name]["ratio_saved"] = row[name]["saved_bytes"] / row["conv2d"]["saved_bytes"]
    return row


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
        "# SDC speed on the CPU (ratios to `F.conv2d`, lower is better)",
        "",
        f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}; float32, Cf = Ci,",
        "gradients into u, v and weight. Targets on 3x3: fwd+bwd <= 1.5x, saved memory <= 2x.",
        f"SDC kernels `torch.compile`d: {_compiled_rows(rows)}.",
        "",
        "| N, Ci->Co, HxW, k, d | conv fwd / fwd+bwd (ms) | SDC fwd | SDC fwd+bwd | SDC saved "
        "| naive fwd | naive fwd+bwd | naive saved |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, c = r["shape"], r["conv2d"]
        lines.append(
            f"| {s['N']}, {s['Ci']}->{s['Co']}, {s['H']}x{s['W']}, {s['k']}x{s['k']}, d{s['dilation']} "
            f"| {c['forward_s'] * 1e3:.1f} / {c['forward_backward_s'] * 1e3:.1f} "
            f"| {r['sdc']['ratio_forward']:.2f}x | {r['sdc']['ratio_forward_backward']:.2f}x "
            f"| {r['sdc']['ratio_saved']:.2f}x "
            f"| {r['naive_unfold']['ratio_forward']:.2f}x "
            f"| {r['naive_unfold']['ratio_forward_backward']:.2f}x "
            f"| {r['naive_unfold']['ratio_saved']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def _compiled_rows(rows: list[dict]) -> str:
    kernels = sorted({r["shape"]["k"] for r in rows if r["sdc"].get("compile")})
    return ", ".join(f"the {k}x{k} rows" for k in kernels) or "no row"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one small shape, no files written")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the SDC kernels of the 3x3 shapes (default: on; off with --quick)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [(1, 32, 32, 16, 16, 3, 1)] if args.quick else SHAPES
    compile = not args.quick if args.compile is None else args.compile
    rows = []
    for shape in shapes:
        rows.append(measure(shape, args.repeats, compile))
        print(markdown(rows[-1:], environment()).splitlines()[-1], flush=True)
    env = environment()
    if not args.quick:
        write_results("sdc_speed", {"environment": env, "rows": rows}, markdown(rows, env))


if __name__ == "__main__":
    main()
