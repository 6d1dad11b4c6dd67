"""SDC (Eq. 5) on CUDA: the Triton paths against F.conv2d and sdnseg's PyTorch fast path.

Each SDC is the full operator with Cf = Ci, 3x3, dilation 1, Perona-Malik similarity (lam = 1):
``d2 = NeighbourSquaredDistance(v)``, ``s = 1/sqrt(1 + d2)``, ``y = DifferenceConv(u, s, W)``.
Methods: ``triton``, the fused kernels of :mod:`sdnseg.nn._triton` (the CUDA default);
``gemm_triton``, the three-GEMM autograd function of :mod:`sdnseg.nn._gemm` (cuBLAS GEMMs) with
the Triton element-wise kernels of :mod:`sdnseg.nn._triton_elementwise` (``backend="torch"``);
``pytorch``, the same with its element-wise work in PyTorch ops (``backend="torch-only"``);
``conv2d``, ``F.conv2d(u, W, padding=1)`` of the same shape, the anchor.
Gradients flow into u, v and the weight. Reported per shape and precision: forward time (no
grad), forward+backward time (CUDA events, warm-up, median), the peak memory allocated over a
forward with grad on (above the inputs), and the bytes autograd saves for backward that are not
the inputs themselves.

Precisions: ``fp32`` (TF32 off for matmul and cuDNN: strict fp32 for all three), ``tf32`` (fp32
tensors, TF32 on for matmul and cuDNN), ``bf16``.

    python benchmarks/sdc_speed_cuda.py --check     # Triton vs float64 reference on CUDA: PASS/FAIL
    python benchmarks/sdc_speed_cuda.py             # -> benchmarks/results/sdc_speed_cuda.{json,md}
    python benchmarks/sdc_speed_cuda.py --check --device cpu  # dry run, Triton interpreter
    python benchmarks/sdc_speed_cuda.py --breakdown --precisions bf16  # per-kernel CUDA times

    python benchmarks/sdc_speed_cuda.py --compile-only [--arch 90]  # ptxas every config, no GPU

``bash benchmarks/cuda_session.sh`` runs both, with the CUDA tests and a short bf16 fit. The
first call of each kernel configuration compiles and autotunes (seconds); warm-up absorbs it.
``SDNSEG_TRITON_AUTOTUNE=0`` skips autotuning of the fused kernels (the element-wise kernels have
static tile sizes and are never autotuned).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "sdc_speed_cuda"

# (N, Ci, Co, H, W); 3x3, dilation 1, Cf = Ci.
SHAPES = [
    (2, 2048, 512, 64, 128),
    (2, 512, 512, 64, 128),
    (2, 256, 256, 128, 256),
    (2, 1024, 1024, 32, 64),
]
PRECISIONS = ("fp32", "tf32", "bf16")
METHODS = ("triton", "gemm_triton", "pytorch", "conv2d")

# --check: (N, Ci, Co, H, W, (kh, kw), dilation). Tiny odd sizes for the borders and masks,
# larger ones for several tiles per dimension and tensor-core sized dots.
CHECK_CASES = [
    (2, 3, 5, 5, 7, (3, 3), 1),
    (2, 3, 5, 5, 7, (3, 3), 2),
    (2, 3, 5, 5, 7, (5, 3), 1),
    (2, 20, 4, 5, 7, (3, 3), 1),
    (2, 64, 48, 17, 33, (3, 3), 1),
    (1, 96, 130, 9, 70, (5, 5), 2),
    (3, 130, 70, 31, 12, (3, 3), 3),
    (2, 256, 256, 16, 16, (3, 3), 1),
    (1, 32, 32, 2, 3, (3, 3), 3),  # every neighbour outside the image
]
CPU_CHECK_CASES = CHECK_CASES[:2]  # the interpreter is slow
# Max |got - ref| / max |ref| allowed per dtype (fp32 with TF32 off).
CHECK_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 1e-2}


# ----------------------------------------------------------------------------------------------
# correctness against the float64 loop reference, sdnseg.nn._reference


def normalised_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.abs().max().item()
    err = (got.double() - ref).abs().max().item()
    return err / scale if scale > 0 else err


def check_case(case, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    """Errors of the fused Triton d2, y and all gradients, and of the three-GEMM path with the
    Triton element-wise kernels (``gemm_*``), against the float64 reference."""
    # Imported here, not at the top: main() may set TRITON_INTERPRET first.
    from sdnseg.nn import _gemm, _reference, _triton

    n, ci, co, h, w, kernel_size, dilation = case
    offsets = _reference.offsets(kernel_size, dilation)
    g = torch.Generator(device="cpu").manual_seed(hash(case) % 2**31)

    def randn(*shape):
        # Rounded to `dtype` first, so the reference sees exactly the kernel's inputs.
        return torch.randn(*shape, generator=g).to(dtype).to(device=device, dtype=torch.float64)

    u, v = randn(n, ci, h, w), randn(n, ci + 1, h, w)
    s = torch.rand(n, len(offsets), h, w, generator=g).to(dtype).to(device, torch.float64)
    weight = randn(co, ci, *kernel_size) / math.sqrt(ci * len(offsets))
    weight = weight.to(dtype).double()
    grad_y, grad_d2 = randn(n, co, h, w), randn(n, len(offsets), h, w)

    leaves64 = [t.clone().requires_grad_() for t in (u, s, weight, v)]
    u64, s64, w64, v64 = leaves64
    y64 = _reference.difference_conv(u64, s64, w64, offsets)
    d264 = _reference.neighbour_squared_distance(v64, offsets)
    refs = torch.autograd.grad((y64, d264), leaves64, (grad_y, grad_d2))

    leaves = [t.to(dtype).requires_grad_() for t in (u, s, weight, v)]
    ut, st, wt, vt = leaves
    y = _triton.difference_conv(ut, st, wt, offsets)
    d2 = _triton.neighbour_squared_distance(vt, offsets)
    grads = torch.autograd.grad((y, d2), leaves, (grad_y.to(dtype), grad_d2.to(dtype)))
    errors = {"y": normalised_error(y, y64), "d2": normalised_error(d2, d264)}
    for name, got, ref in zip(("grad_u", "grad_s", "grad_w", "grad_v"), grads, refs, strict=True):
        errors[name] = normalised_error(got, ref)

    leaves = [t.to(dtype).requires_grad_() for t in (u, s, weight, v)]
    ut, st, wt, vt = leaves
    y = _gemm.difference_conv(ut, st, wt, offsets, elementwise="triton")
    d2 = _gemm.neighbour_squared_distance(vt, offsets, elementwise="triton")
    grads = torch.autograd.grad((y, d2), leaves, (grad_y.to(dtype), grad_d2.to(dtype)))
    errors |= {"gemm_y": normalised_error(y, y64), "gemm_d2": normalised_error(d2, d264)}
    names = ("gemm_grad_u", "gemm_grad_s", "gemm_grad_w", "gemm_grad_v")
    for name, got, ref in zip(names, grads, refs, strict=True):
        errors[name] = normalised_error(got, ref)
    return errors


def run_check(device: torch.device) -> bool:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = CHECK_CASES if device.type == "cuda" else CPU_CHECK_CASES
    dtypes = list(CHECK_TOLERANCE) if device.type == "cuda" else [torch.float32, torch.bfloat16]
    ok = True
    for dtype in dtypes:
        for case in cases:
            errors = check_case(case, dtype, device)
            worst = max(errors.values())
            passed = math.isfinite(worst) and worst <= CHECK_TOLERANCE[dtype]
            ok &= passed
            detail = " ".join(f"{k}={e:.1e}" for k, e in errors.items())
            print(f"{'PASS' if passed else 'FAIL'} {str(dtype):15} {case}: {detail}", flush=True)
    print("PASS" if ok else "FAIL", flush=True)
    return ok


# ----------------------------------------------------------------------------------------------
# --compile-only: compile every kernel configuration for a GPU architecture without a GPU


def compile_only(arch: int, defaults_only: bool) -> bool:
    """Compile each kernel for sm_<arch> (Triton + ptxas, no device) and report its registers.

    Signatures assume the common case the JIT would specialise on: 16-aligned pointers and
    16-divisible ints, except K and the W stride of (N, K, H, W) tensors (1).
    """
    import shutil
    import subprocess
    import tempfile

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sdnseg.nn import _triton_kernels as kernels

    if kernels.INTERPRET:
        print("compile-only: unset TRITON_INTERPRET", file=sys.stderr)
        return False
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    cuobjdump = str(cuobjdump) if cuobjdump.exists() else shutil.which("cuobjdump")
    ok = True
    for name, (raw, tuned, config_name) in kernels.KERNELS.items():
        if defaults_only or tuned is None or not kernels.autotune_enabled():
            configs = [dict(kernels.DEFAULTS[config_name])]
        else:
            configs = [
                {**c.kwargs, "num_warps": c.num_warps, "num_stages": c.num_stages}
                for c in tuned.configs
            ]
        for dtype, prec in (("fp32", "ieee"), ("fp32", "tf32"), ("bf16", "tf32"), ("fp16", "tf32")):
            if not name.startswith("dc") and prec == "tf32" and dtype == "fp32":
                continue
            for config in configs:
                meta = {k: v for k, v in config.items() if k not in ("num_warps", "num_stages")}
                if name.startswith("dc"):
                    meta |= {"DOT_F32": False, "PREC": prec}
                if name == "nsd_fwd":
                    meta["BLOCK_KP"] = 8
                args = raw.arg_names
                sig = {}
                for a in args:
                    if a in meta:
                        sig[a] = "constexpr"
                    elif a == "off_ptr":
                        sig[a] = "*i32"
                    elif a == "ws_ptr":
                        sig[a] = "*fp32"
                    elif a.endswith("_ptr"):
                        sig[a] = f"*{dtype}"
                    elif a in ("inv_c", "scale"):
                        sig[a] = "fp32"
                    else:
                        sig[a] = "i32"
                unit = {a for a in args if a.endswith("_w") and a[:-2] + "_k" in args}
                attrs = {
                    (i,): [["tt.divisibility", 16]]
                    for i, a in enumerate(args)
                    if sig[a] not in ("constexpr", "fp32") and a != "K" and a not in unit
                }
                label = f"{name:9} {dtype} {prec:4} {config}"
                try:
                    compiled = triton.compile(
                        ASTSource(raw, sig, constexprs=meta, attrs=attrs),
                        target=GPUTarget("cuda", arch, 32),
                        options={
                            "num_warps": config["num_warps"],
                            "num_stages": config["num_stages"],
                        },
                    )
                except Exception as error:  # noqa: BLE001 - report every failing config
                    ok = False
                    print(f"FAIL {label}: {type(error).__name__}: {str(error)[:300]}", flush=True)
                    continue
                usage = ""
                if cuobjdump:
                    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
                        f.write(compiled.asm["cubin"])
                        f.flush()
                        out = subprocess.run(
                            [cuobjdump, "-res-usage", f.name], capture_output=True, text=True
                        ).stdout
                    usage = " ".join(w for w in out.split() if w.startswith(("REG:", "STACK:")))
                shared = compiled.metadata.shared
                print(f"OK   {label}: {usage} shared={shared}", flush=True)
    ok &= compile_elementwise(arch)
    print("PASS" if ok else "FAIL", flush=True)
    return ok


def compile_elementwise(arch: int) -> bool:
    """Compile the element-wise kernels of the three-GEMM path (:mod:`sdnseg.nn.
    _triton_elementwise_kernels`) for sm_<arch>: fp32 and fp64, every constexpr flag, their static
    tile sizes; int32 sizes and strides, the common specialisation."""
    import itertools

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from sdnseg.nn import _triton_elementwise_kernels as kernels

    ok = True
    for name, config_name in (
        ("_tap_stack_kernel", "stack"),
        ("_grad_s_kernel", "reduce"),
        ("_grad_u_kernel", "gather"),
        ("_d2_kernel", "reduce"),
        ("_d2_backward_kernel", "gather"),
    ):
        raw = getattr(kernels, name)
        config = dict(kernels.CONFIGS[config_name])
        warps = config.pop("num_warps")
        flags = [a for a in ("HAS_S", "DIFFERENCE") if a in raw.arg_names]
        for dtype, values in itertools.product(
            ("fp32", "fp64"), itertools.product((True, False), repeat=len(flags))
        ):
            meta = config | dict(zip(flags, values, strict=True))
            sig = {
                a: "constexpr"
                if a in meta
                else ("*i32" if a == "off_ptr" else f"*{dtype}" if a.endswith("_ptr") else "i32")
                for a in raw.arg_names
            }
            label = f"{name:20} {dtype} {meta}"
            try:
                triton.compile(
                    ASTSource(raw, sig, constexprs=meta),
                    target=GPUTarget("cuda", arch, 32),
                    options={"num_warps": warps},
                )
            except Exception as error:  # noqa: BLE001 - report every failing config
                ok = False
                print(f"FAIL {label}: {type(error).__name__}: {str(error)[:300]}", flush=True)
                continue
            print(f"OK   {label}", flush=True)
    return ok


# ----------------------------------------------------------------------------------------------
# benchmark


def sdc_functions() -> dict[str, Callable]:
    """The timed methods: fused Triton, three GEMMs with Triton or PyTorch element-wise, conv2d."""
    from sdnseg.nn import _gemm, _triton
    from sdnseg.nn._tap_stacks import kernel_offsets
    from sdnseg.nn.functional import perona_malik

    offsets = kernel_offsets((3, 3), 1)

    def triton_sdc(u, v, weight):
        s = torch.rsqrt(1.0 + _triton.neighbour_squared_distance(v, offsets))
        return _triton.difference_conv(u, s, weight, offsets)

    def gemm_triton_sdc(u, v, weight):
        return _gemm.semantic_difference_conv(
            u, v, weight, None, offsets, perona_malik, 1.0, elementwise="triton"
        )

    def pytorch_sdc(u, v, weight):
        return _gemm.semantic_difference_conv(
            u, v, weight, None, offsets, perona_malik, 1.0, elementwise="torch"
        )

    def conv2d(u, v, weight):
        return F.conv2d(u, weight, padding=1)

    return {
        "triton": triton_sdc,
        "gemm_triton": gemm_triton_sdc,
        "pytorch": pytorch_sdc,
        "conv2d": conv2d,
    }


def cuda_median_ms(fn: Callable[[], object], iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def memory_profile(fn: Callable, inputs: tuple[torch.Tensor, ...]) -> dict[str, float]:
    """Peak bytes over a forward with grad on, and saved-for-backward bytes beyond the inputs."""
    input_storages = {t.untyped_storage().data_ptr() for t in inputs}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in input_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(*inputs)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    output_bytes = out.untyped_storage().nbytes()
    del out
    mib = 1 << 20
    return {
        "fwd_peak_mib": peak / mib,
        "saved_mib": sum(saved.values()) / mib,
        "output_mib": output_bytes / mib,
    }


def agreement_with_pytorch(fn: Callable, anchor: torch.Tensor, inputs) -> float:
    """Max |y - y_pytorch| / max |y_pytorch| of one SDC method at the timed shape and dtype.

    The timed kernels must compute SDC; ``--check`` covers small shapes against float64, this
    covers the autotuned configurations the timings actually ran.
    """
    with torch.no_grad():
        return ((fn(*inputs).float() - anchor).abs().max() / anchor.abs().max()).item()


def measure(shape, precision: str, methods: dict[str, Callable], iters: int, warmup: int):
    n, ci, co, h, w = shape
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*size, scale=1.0):
        x = torch.randn(*size, generator=g, device="cuda") * scale
        return x.to(dtype).requires_grad_()

    u, v = randn(n, ci, h, w), randn(n, ci, h, w)
    weight = randn(co, ci, 3, 3, scale=1.0 / math.sqrt(9 * ci))
    grad_y = torch.randn(n, co, h, w, generator=g, device="cuda").to(dtype)
    anchor = None
    if "pytorch" in methods:
        try:
            with torch.no_grad():
                anchor = methods["pytorch"](u, v, weight).float()
        except Exception as error:  # noqa: BLE001 - its own row records the failure
            print(f"no agreement check at {shape} {precision}: {error}", flush=True)
    rows = []
    for name, fn in methods.items():
        row = {"N": n, "Ci": ci, "Co": co, "H": h, "W": w, "precision": precision, "method": name}

        def forward(fn=fn):
            with torch.no_grad():
                fn(u, v, weight)

        def forward_backward(fn=fn):
            u.grad = v.grad = weight.grad = None
            fn(u, v, weight).backward(grad_y)

        try:
            if anchor is not None and name not in ("pytorch", "conv2d"):
                row["rel_err_vs_pytorch"] = agreement_with_pytorch(fn, anchor, (u, v, weight))
            row["fwd_ms"] = cuda_median_ms(forward, iters, warmup)
            row["fwd_bwd_ms"] = cuda_median_ms(forward_backward, iters, warmup)
            u.grad = v.grad = weight.grad = None
            row.update(memory_profile(fn, (u, v, weight)))
        except torch.cuda.OutOfMemoryError as error:
            row["error"] = f"OOM: {str(error).splitlines()[0]}"
        except Exception as error:  # noqa: BLE001 - record the failure, keep measuring the rest
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        u.grad = v.grad = weight.grad = None
        torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def environment() -> dict:
    import triton

    from sdnseg.nn import _triton_kernels

    props = torch.cuda.get_device_properties(0)
    return {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0),
        "sm_count": props.multi_processor_count,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "autotune": _triton_kernels.autotune_enabled(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _pytorch_path_note(env: dict) -> str:
    # Results measured before the three-GEMM rewrite have no key: their PyTorch path was the
    # earlier implementation.
    return ", PyTorch path: three GEMMs" if env.get("pytorch_path") == "three_gemm" else ""


def markdown(rows: list[dict], environments: dict[str, dict], iters: int, note: str = "") -> str:
    """The tables, one per precision, each with the machine and date it was measured on."""
    lines = [
        "# SDC (Eq. 5) on CUDA: Triton paths vs PyTorch fast path vs F.conv2d",
        "",
    ]
    for precision, env in environments.items():
        lines.append(
            f"- {precision}: {env['gpu']} ({env['sm_count']} SMs), torch {env['torch']}, "
            f"triton {env['triton']}, CUDA {env['cuda']}, "
            f"autotune {'on' if env['autotune'] else 'off'}{_pytorch_path_note(env)}, {env['date']}."
        )
    lines += [
        "",
        *([note, ""] if note else []),
        f"3x3, dilation 1, Cf = Ci, Perona-Malik; median of {iters} runs (CUDA events). "
        "fwd: no grad. fwd+bwd: grads into u, v, W. peak: max allocated over a forward with grad, "
        "above the inputs. saved: bytes autograd keeps for backward beyond the inputs. "
        "Methods: `triton` fused Triton kernels; `gemm_triton` three GEMMs (cuBLAS) + Triton "
        "element-wise kernels; `pytorch` three GEMMs + PyTorch element-wise ops; `conv2d`. "
        "`x pt`: time relative to the PyTorch fast path; `x conv`: relative to F.conv2d. "
        "err vs pt: max |y - y_pt| / max |y_pt| at that shape and dtype.",
        "",
    ]
    by_key = {
        (r["N"], r["Ci"], r["Co"], r["H"], r["W"], r["precision"], r["method"]): r for r in rows
    }
    for precision in dict.fromkeys(r["precision"] for r in rows):
        lines += [
            f"## {precision}",
            "",
            "| N, Ci->Co, HxW | method | fwd ms | fwd+bwd ms | x pt fwd | x pt fwd+bwd "
            "| x conv fwd+bwd | peak MiB | saved MiB | err vs pt |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["precision"] != precision:
                continue
            key = (r["N"], r["Ci"], r["Co"], r["H"], r["W"], precision)
            pt, conv = by_key.get((*key, "pytorch"), {}), by_key.get((*key, "conv2d"), {})

            def ratio(a: dict, b: dict, field: str) -> str:
                if a.get(field) is None or b.get(field) is None:
                    return "—"
                return f"{a[field] / b[field]:.2f}"

            shape = f"{r['N']}, {r['Ci']}->{r['Co']}, {r['H']}x{r['W']}"
            if "error" in r:
                lines.append(f"| {shape} | {r['method']} | {r['error']} |" + " |" * 7)
                continue
            lines.append(
                f"| {shape} | {r['method']} | {_fmt(r['fwd_ms'])} | {_fmt(r['fwd_bwd_ms'])} "
                f"| {ratio(r, pt, 'fwd_ms')} | {ratio(r, pt, 'fwd_bwd_ms')} "
                f"| {ratio(r, conv, 'fwd_bwd_ms')} "
                f"| {_fmt(r['fwd_peak_mib'], '.0f')} | {_fmt(r['saved_mib'], '.0f')} "
                f"| {_fmt(r.get('rel_err_vs_pytorch'), '.1e')} |"
            )
        lines.append("")
    return "\n".join(lines)


def merge_payload(earlier: dict, rows: list[dict], environments: dict[str, dict]) -> dict:
    """``earlier``'s results with the precisions measured now replaced by ``rows``.

    GPU time comes in short loans, so one precision at a time may be all a call can measure;
    each precision keeps the environment (and date) it was measured in.
    """
    if "environments" not in earlier or "rows" not in earlier:
        raise ValueError(
            f"{NAME}.json has no 'environments'/'rows' (keys: {sorted(earlier)}); "
            "cannot merge into it, rerun without --merge"
        )
    kept = [r for r in earlier["rows"] if r["precision"] not in environments]
    kept_envs = {k: v for k, v in earlier["environments"].items() if k not in environments}
    order = [p for p in PRECISIONS if p in kept_envs or p in environments]
    merged_envs = {**kept_envs, **environments}
    merged_rows = kept + rows
    return {
        "environments": {p: merged_envs[p] for p in order},
        "iters": earlier.get("iters"),
        "note": earlier.get("note", ""),
        "rows": sorted(merged_rows, key=lambda r: order.index(r["precision"])),
    }


def kernel_breakdown(args: argparse.Namespace) -> str:
    """Per-kernel CUDA time of one forward+backward of each method at the first shape, per
    precision (``torch.profiler``: cuBLAS/cuDNN GEMMs, Triton kernels, PyTorch element-wise ops),
    so the next optimisation step can be chosen from numbers. Returns the tables as text."""
    from torch.profiler import ProfilerActivity, profile

    methods = sdc_functions()
    n, ci, co, h, w = SHAPES[0]
    sections = []
    for precision in args.precisions:
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32

        u, v = (torch.randn(n, ci, h, w, device="cuda").to(dtype) for _ in range(2))
        weight = torch.randn(co, ci, 3, 3, device="cuda") / math.sqrt(9 * ci)
        u, v, weight = (x.to(dtype).requires_grad_() for x in (u, v, weight))
        grad_y = torch.randn(n, co, h, w, device="cuda").to(dtype)
        for name in args.methods:
            fn = methods[name]
            for _ in range(args.warmup):  # compile, autotune, allocate
                fn(u, v, weight).backward(grad_y)
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                fn(u, v, weight).backward(grad_y)
                torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="device_time_total", row_limit=15)
            sections.append(f"## {precision} {name} {SHAPES[0]}\n\n{table}")
            u.grad = v.grad = weight.grad = None
            torch.cuda.empty_cache()
    return "\n\n".join(sections)


def run_benchmark(args: argparse.Namespace) -> None:
    methods = sdc_functions()
    methods = {k: methods[k] for k in args.methods}
    shapes = SHAPES[: args.max_shapes] if args.max_shapes else SHAPES
    path = RESULTS / f"{NAME}.json"
    earlier = json.loads(path.read_text()) if args.merge and path.exists() else None
    if earlier is not None and earlier.get("iters") != args.iters:
        raise SystemExit(
            f"--merge: {path} was measured with --iters {earlier.get('iters')}, not {args.iters}"
        )
    rows: list[dict] = []
    env = {**environment(), "pytorch_path": "three_gemm"}
    environments = {p: env for p in args.precisions}

    def results() -> tuple[dict, str]:
        payload = {"environments": environments, "iters": args.iters, "note": "", "rows": rows}
        if earlier is not None:
            payload = merge_payload(earlier, rows, environments)
        table = markdown(payload["rows"], payload["environments"], args.iters, payload["note"])
        return payload, table

    for precision in args.precisions:
        for shape in shapes:
            rows += measure(shape, precision, methods, args.iters, args.warmup)
            # Written after every shape, so a session cut short still leaves its numbers.
            payload, table = results()
            write_atomic(path, json.dumps(payload, indent=2) + "\n")
            write_atomic(RESULTS / f"{NAME}.md", table)
    print(results()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="correctness only, prints PASS/FAIL")
    parser.add_argument(
        "--device",
        default="cuda",
        choices=("cuda", "cpu"),
        help="cpu: run --check under the Triton interpreter (a dry run of this script)",
    )
    parser.add_argument(
        "--compile-only",
        action="store_true",
        help="compile every kernel config for --arch with ptxas (no GPU needed), print registers",
    )
    parser.add_argument("--arch", type=int, default=90, help="sm_XX for --compile-only")
    parser.add_argument("--defaults-only", action="store_true", help="--compile-only: defaults")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--max-shapes", type=int, default=0, help="only the first N shapes")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="per-kernel CUDA times (torch.profiler) of each method at the first shape -> "
        "results/sdc_speed_cuda_breakdown.txt, instead of the timings",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only the --precisions measured now in the results, keep the others",
    )
    args = parser.parse_args(argv)

    if args.compile_only:
        return 0 if compile_only(args.arch, args.defaults_only) else 1
    if args.device == "cpu":
        if not args.check:
            parser.error("--device cpu only dry-runs --check (timings need CUDA)")
        # Read when the kernel module is first imported (by check_case), which is after this.
        os.environ["TRITON_INTERPRET"] = "1"
        return 0 if run_check(torch.device("cpu")) else 1
    if not torch.cuda.is_available():
        print(
            "sdc_speed_cuda: no CUDA device (torch.cuda.is_available() is False); nothing run. "
            "Use `--check --device cpu` for a dry run under the Triton interpreter.",
            file=sys.stderr,
        )
        return 2
    if os.environ.get("TRITON_INTERPRET") == "1":
        print(
            "sdc_speed_cuda: unset TRITON_INTERPRET to time the compiled kernels", file=sys.stderr
        )
        return 2
    if args.check:
        return 0 if run_check(torch.device("cuda")) else 1
    if args.breakdown:
        text = kernel_breakdown(args)
        write_atomic(RESULTS / f"{NAME}_breakdown.txt", text + "\n")
        print(text)
        return 0
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
