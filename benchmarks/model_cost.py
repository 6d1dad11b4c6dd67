"""Cost of every named model pair, baseline vs +SDN: parameters, FLOPs, CPU latency, peak memory.

Pairs: FCN-R50-D8, Semantic FPN-R50, Segmenter-ViT-B/16, OCRNet-HRNetV2-W48, MaskFormer-R101 and
-Swin-B (paper scale) and their CPU-scale R18 / ViT-T/16 / HRNetV2-W18-Small twins, FCN-D8,
Semantic FPN, OCRNet and MaskFormer on EfficientNet-Lite2 (all but OCRNet on Lite0 too; the
weights are not loaded: cost does not depend on them), 19 classes, batch 1, inputs 512×512
and 360×480. FCN-R50-D8 and Semantic FPN-R50 also get the paper's
full-width SDN (``sdc_channels=None``: the SDC as wide as the stage; ``guidance_channels`` = the
last stage's width, the Φ the paper implies) beside our narrow default; OCRNet-HR48's +SDN is
that full width already.

How each number is taken (all recorded in the JSON too):

* Params: of the inference path (backbone, neck, head); the training-only auxiliary head is left out.
* GFLOPs: ``torch.utils.flop_counter.FlopCounterMode``, 2 FLOPs per multiply-add (mmseg's and
  fvcore's "FLOPs" are multiply-adds: half these). It counts convolutions, matmuls and attention;
  torch has no formula for the CPU attention kernel
  (``aten._scaled_dot_product_flash_attention_for_cpu``), so we add torch's own SDPA formula for it.
  The SDC's product is a matmul inside a custom autograd Function and the counter sees it: a lone
  SDC counts ``2·N·H·W·(kh·kw−1)·Ci·Co``, over the map zero-padded by one pixel (our kernels'
  layout: ``(H+2)(W+2)`` instead of ``H·W``), checked on every run (``sdc_check``). Elementwise
  work is counted for no model (norms, activations, resizes, softmax, and the SDC's differences and
  similarity, ``O(N·H·W·(kh·kw−1)·(Ci + Cf))``).
* Latency: median and minimum wall time of a few forwards after warm-up runs, eval,
  ``torch.no_grad``, ``torch.set_num_threads(2)``, the SDC on its three-GEMM path. The
  models of a pair take turns in every round, so that the bursts of a shared machine hit them
  alike; the load average is recorded.
* Peak memory: the largest total size of the tensors the forward pass allocates that are alive at
  the same time (activations and temporaries), tracked by a ``TorchDispatchMode`` that counts each
  new storage until it is freed. Weights are not included (params × 4 bytes), nor allocator caching,
  fragmentation or framework overhead: it is not the process RSS, which on CPU cannot isolate one
  forward pass. Measured in the FLOP pass.

Run: ``python benchmarks/model_cost.py`` (several minutes on 2 cores; ``--help`` for options).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_results  # noqa: E402
from sdnseg.models import create_model  # noqa: E402
from sdnseg.nn.functional import semantic_difference_conv2d  # noqa: E402

NUM_CLASSES = 19
SIZES = ((512, 512), (360, 480))
# (label, baseline, full-width SDN variant too)
PAIRS = (
    ("FCN-R50-D8", "fcn_r50d8", True),
    ("SemFPN-R50", "semfpn_r50", True),
    ("Segmenter-ViT-B/16", "segmenter_vitb16", False),
    ("FCN-R18-D8", "fcn_r18d8", False),
    ("SemFPN-R18", "semfpn_r18", False),
    ("Segmenter-ViT-T/16", "segmenter_vitt16", False),
    ("OCRNet-HR48", "ocrnet_hr48", False),
    ("OCRNet-HR18s", "ocrnet_hr18s", False),
    ("FCN-EffLite2-D8", "fcn_efflite2d8", False),
    ("SemFPN-EffLite2", "semfpn_efflite2", False),
    ("FCN-EffLite0-D8", "fcn_efflite0d8", False),
    ("SemFPN-EffLite0", "semfpn_efflite0", False),
    ("OCRNet-EffLite2", "ocrnet_efflite2", False),
    ("MaskFormer-R101", "maskformer_r101", False),
    ("MaskFormer-Swin-B", "maskformer_swin_b", False),
    ("MaskFormer-EffLite2", "maskformer_efflite2", False),
    ("MaskFormer-EffLite0", "maskformer_efflite0", False),
)
PAPER_SCALE = (
    "fcn_r50d8",
    "semfpn_r50",
    "segmenter_vitb16",
    "ocrnet_hr48",
    "maskformer_r101",
    "maskformer_swin_b",
)


def _sdpa_cpu_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}


class LiveTensorBytes(TorchDispatchMode):
    """Peak total bytes of the storages created under the mode and alive at the same time.

    Storages of ``known`` tensors (weights, the input) are never counted, nor are views of them.
    """

    def __init__(self, known: Iterator[torch.Tensor] = ()) -> None:
        super().__init__()
        self.known = {t.untyped_storage().data_ptr() for t in known}
        self.alive: set[int] = set()
        self.live = self.peak = 0

    def _freed(self, key: int, size: int) -> None:
        self.alive.discard(key)
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self.alive or key in self.known:
                continue
            self.alive.add(key)
            self.live += size
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._freed, key, size)
        return out


def sdc_check() -> list[dict]:
    """FlopCounterMode on a lone SDC against ``2·N·H·W·(kh·kw−1)·Ci·Co``, in both product layouts.

    Our kernels run the product over the map zero-padded by the kernel radius, so the counter may
    see up to ``(H+2)(W+2)/(HW)`` times the formula; it must not see less (that would mean it
    misses the product).
    """
    rows = []
    for ci, co in ((32, 32), (64, 16), (16, 64)):
        n, h, w, cf = 1, 40, 48, 8
        u, v = torch.randn(n, ci, h, w), torch.randn(n, cf, h, w)
        weight = torch.randn(co, ci, 3, 3)
        with FlopCounterMode(display=False) as counter:
            semantic_difference_conv2d(u, v, weight)
        counted = counter.get_total_flops()
        formula = 2 * n * h * w * (3 * 3 - 1) * ci * co
        padded = formula * (h + 2) * (w + 2) // (h * w)
        rows.append(
            {
                "u": [n, ci, h, w],
                "co": co,
                "counted": counted,
                "formula": formula,
                "formula_on_padded_map": padded,
            }
        )
        if not formula <= counted <= padded:
            raise RuntimeError(f"FlopCounterMode does not count the SDC product: {rows[-1]}")
    return rows


def inference_params(model: torch.nn.Module) -> tuple[int, int]:
    """Parameters without the auxiliary head, and those of the neck."""
    total = sum(p.numel() for p in model.parameters())
    aux = sum(p.numel() for p in model.aux_head.parameters()) if model.aux_head is not None else 0
    neck = sum(p.numel() for p in model.neck.parameters()) if model.neck is not None else 0
    return total - aux, neck


def count(model: torch.nn.Module, images: torch.Tensor) -> dict:
    """FLOPs and peak activation memory of one eager forward pass."""
    known = [*model.parameters(), *model.buffers(), images]
    counter = FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS)
    with torch.no_grad(), counter, LiveTensorBytes(known) as memory:
        model(images)
    return {"gflops": counter.get_total_flops() / 1e9, "peak_activation_mb": memory.peak / 2**20}


def time_interleaved(models: list, images: torch.Tensor, repeats: int, warmup: int) -> list[dict]:
    """Latency of each model, the models taking turns in every round.

    Two cores shared with other work give bursts of slowdown (an OpenMP thread descheduled
    stalls the other): taking turns puts a pair's models in the same conditions, so their ratio
    stays meaningful; the minimum is the least disturbed run.
    """
    samples: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            for _ in range(warmup):
                model(images)
        for _ in range(repeats):
            for model, times in zip(models, samples, strict=True):
                start = time.perf_counter()
                model(images)
                times.append(time.perf_counter() - start)
    return [
        {
            "latency_ms": statistics.median(t) * 1e3,
            "latency_min_ms": min(t) * 1e3,
            "latency_samples_ms": [round(x * 1e3, 1) for x in t],
        }
        for t in samples
    ]


def variants(base: str, full_width: bool) -> list[tuple[str, str, dict]]:
    out = [("baseline", base, {}), ("+SDN", base + "_sdn", {})]
    if full_width:
        width = create_model(base, NUM_CLASSES).backbone.channels[-1]
        full = {"sdc_channels": None, "guidance_channels": width}
        out.append(("+SDN, full width", base + "_sdn", full))
    return out


def run_pair(label: str, base: str, full_width: bool, sizes, repeats: int, warmup: int) -> list:
    start = time.perf_counter()
    rows, models = [], []
    for variant, name, overrides in variants(base, full_width):
        torch.manual_seed(0)
        model = create_model(name, NUM_CLASSES, **overrides).eval()
        params, neck = inference_params(model)
        rows.append(
            {
                "pair": label,
                "variant": variant,
                "model": name,
                "overrides": overrides,
                "params_m": params / 1e6,
                "neck_params_m": neck / 1e6,
                "sizes": {},
            }
        )
        models.append(model)
    for size in sizes:
        images = torch.randn(1, 3, *size)
        timings = time_interleaved(models, images, repeats, warmup)
        for row, model, timing in zip(rows, models, timings, strict=True):
            row["sizes"][f"{size[0]}x{size[1]}"] = {**count(model, images), **timing}
    for row in rows[1:]:
        row["ratio"] = _ratios(row, rows[0])
    del models
    gc.collect()
    print(f"{label:20s} {time.perf_counter() - start:6.1f}s", file=sys.stderr, flush=True)
    return rows


def _ratios(row: dict, baseline: dict) -> dict:
    ratios = {"params": row["params_m"] / baseline["params_m"]}
    for size, values in row["sizes"].items():
        ratios[size] = {
            k: v / baseline["sizes"][size][k] for k, v in values.items() if isinstance(v, float)
        }
    return ratios


def _cell(value: float, ratio: float | None, digits: int) -> str:
    text = f"{value:,.{digits}f}"
    return text if ratio is None else f"{text} ({ratio:.2f}×)"


def markdown(payload: dict) -> str:
    env = payload["environment"]
    lines = [
        "# Model cost: baseline vs +SDN",
        "",
        f"{NUM_CLASSES} classes, batch 1, eval. CPU: {env['cpu']}, {env['threads']} threads, "
        f"torch {env['torch']}, {env['date']}. Generated by `benchmarks/model_cost.py`; "
        "method in its docstring. Ratios in parentheses are to the pair's baseline.",
        "",
        "* Params: inference path (the training-only auxiliary head excluded).",
        "* GFLOPs: `FlopCounterMode`, 2 per multiply-add (mmseg reports multiply-adds, half "
        "these); convs, matmuls (the SDC's product included) and attention; no elementwise ops.",
        f"* Latency: median and minimum of {payload['repeats']['paper_scale']} (paper scale) or "
        f"{payload['repeats']['cpu_scale']} (CPU scale) runs after {payload['warmup']} warm-up "
        "runs, `no_grad`; a pair's models take turns in each round. The 2 cores were shared "
        f"with other work (load average {payload['load_average']['start']:.1f} at the start, "
        f"{payload['load_average']['end']:.1f} at the end): the minimum is the least disturbed.",
        "* Peak act.: peak bytes of tensors allocated by the forward pass and alive together "
        "(weights excluded); not process RSS.",
        "* full width: `sdc_channels=None`, `guidance_channels` = last stage width (the paper's "
        "form); `+SDN` is our narrow default (`sdnseg.models.zoo`).",
    ]
    for size in payload["sizes"]:
        lines += [
            "",
            f"## {size.replace('x', '×')}",
            "",
            "| Model | Variant | Params (M) | GFLOPs | Latency, median (ms) | Latency, min (ms) "
            "| Peak act. (MB) |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for row in payload["results"]:
            ratio = row.get("ratio")
            values = row["sizes"][size]
            r = ratio[size] if ratio else {}
            cells = [
                _cell(row["params_m"], ratio["params"] if ratio else None, 2),
                _cell(values["gflops"], r.get("gflops"), 1),
                _cell(values["latency_ms"], r.get("latency_ms"), 0),
                _cell(values["latency_min_ms"], r.get("latency_min_ms"), 0),
                _cell(values["peak_activation_mb"], r.get("peak_activation_mb"), 1),
            ]
            lines.append(f"| {row['pair']} | {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", help="baselines to run (default: all pairs)")
    parser.add_argument("--sizes", nargs="*", default=[f"{h}x{w}" for h, w in SIZES])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs, CPU-scale models")
    parser.add_argument("--repeats-paper", type=int, default=5, help="timed runs, paper scale")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print markdown, write nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = [p for p in PAIRS if not args.models or p[1] in args.models]
    if not pairs:
        parser.error(f"--models must name baselines among {[p[1] for p in PAIRS]}")
    sizes = [tuple(int(s) for s in size.split("x")) for size in args.sizes]
    start = time.perf_counter()
    payload = {
        "environment": environment(),
        "num_classes": NUM_CLASSES,
        "batch": 1,
        "sizes": [f"{h}x{w}" for h, w in sizes],
        "repeats": {"paper_scale": args.repeats_paper, "cpu_scale": args.repeats},
        "warmup": args.warmup,
        "sdc_check": sdc_check(),
        "load_average": {"start": os.getloadavg()[0]},
        "method": __doc__,
    }
    payload["results"] = [
        row
        for label, base, full_width in pairs
        for row in run_pair(
            label,
            base,
            full_width,
            sizes,
            args.repeats_paper if base in PAPER_SCALE else args.repeats,
            args.warmup,
        )
    ]
    payload["load_average"]["end"] = os.getloadavg()[0]
    payload["total_s"] = round(time.perf_counter() - start, 1)
    text = markdown(payload)
    if args.no_write:
        print(text)
    else:
        write_results("model_cost", payload, text)
        print(text)


if __name__ == "__main__":
    main()
