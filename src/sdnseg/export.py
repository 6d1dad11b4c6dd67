"""ONNX export of a :class:`~sdnseg.models.Segmentor`, with dynamic batch, height and width.

Exporter. We use PyTorch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``
with ``dynamic_axes``). With torch 2.14 the dynamo exporter took 20–30× longer on these models (here
30 s for FCN-R18-D8+SDN, 2 min for Semantic FPN-R18+SDN on one core), gave a ViT graph whose batch
dimension ORT rejected at batch 2, and stops at the SDC's ``lam > 0`` check, which is data-dependent
under ``torch.export``. The TorchScript exporter records shapes as graph values, so the padding,
the crop and the ViT position-embedding resize follow the input size; it lacks only timm's
antialiased bicubic resize (``aten::_upsample_bicubic2d_aa``), which we map to ONNX ``Resize``
(opset 18: ``antialias=1``, ``cubic_coeff_a=-0.5``, ``exclude_outside=1``, as the dynamo exporter
does).

What is exported is :meth:`Segmentor.forward` itself in eval mode: the padded-forward rule of
:mod:`sdnseg.models.padding` (pad the input bottom/right to a multiple of ``size_divisor``,
backbone, neck, head, bilinear resize to the padded size, crop), which pads by zero pixels where
none are needed rather than branching on the size, so the tracer keeps height and width dynamic.
The SDC takes its plain pad/slice/conv path while exporting (see :mod:`sdnseg.nn.functional`).

Branches on shapes inside the model are frozen by the tracer too: they hold for every size because
the input is padded (feature sizes keep their ratios). One exception is handled here: timm skips
the position-embedding resize when the token grid equals the ViT's own, so a dynamic export never
traces at that grid (the example is made one ``size_divisor`` taller).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from sdnseg.io import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # the first with Resize(antialias=1), needed by timm's ViT position embedding
MIN_OPSET = 14  # scaled_dot_product_attention
INPUT_NAME, OUTPUT_NAME = "images", "logits"
_DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
_BICUBIC_AA = "aten::_upsample_bicubic2d_aa"


def _upsample_bicubic2d_aa(g, input, output_size, align_corners, scales_h=None, scales_w=None):
    """TorchScript-exporter symbolic of ``aten::_upsample_bicubic2d_aa`` (PyTorch's antialiased
    bicubic: Keys ``a = -0.5``, taps outside the image dropped and the rest renormalised)."""
    from torch.onnx import symbolic_helper

    if g.opset < 18:
        raise torch.onnx.errors.OnnxExporterError(
            f"antialiased bicubic resize (timm's ViT position embedding) needs opset >= 18, "
            f"got {g.opset}"
        )
    align = symbolic_helper._maybe_get_const(align_corners, "b")
    # Shape + Slice rather than Shape(start, end): the exporter's constant folding ignores the
    # latter's attributes and would fold the whole shape.
    batch_and_channels = g.op(
        "Slice",
        g.op("Shape", input),
        g.op("Constant", value_t=torch.tensor([0])),
        g.op("Constant", value_t=torch.tensor([2])),
    )
    size = g.op("Cast", output_size, to_i=7)  # INT64
    size = g.op("Concat", batch_and_channels, size, axis_i=0)
    empty = g.op("Constant", value_t=torch.tensor([], dtype=torch.float32))
    return g.op(
        "Resize",
        input,
        empty,
        empty,
        size,
        mode_s="cubic",
        coordinate_transformation_mode_s="align_corners" if align else "half_pixel",
        cubic_coeff_a_f=-0.5,
        antialias_i=1,
        exclude_outside_i=1,
    )


@contextlib.contextmanager
def _exporting(model: nn.Module, opset: int) -> Iterator[None]:
    """Eval mode, the bicubic-aa symbolic and quiet tracer warnings, all undone afterwards."""
    was_training = model.training
    model.eval()
    torch.onnx.register_custom_op_symbolic(_BICUBIC_AA, _upsample_bicubic2d_aa, opset)
    try:
        with warnings.catch_warnings():
            # Expected: the tracer freezes shape checks (e.g. timm's patch-size assert).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The choice of the TorchScript exporter is deliberate (module docstring), and it calls
            # one of its own deprecated helpers: neither is the caller's to act on.
            for message in ("You are using the legacy TorchScript", "The feature will be removed"):
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(_BICUBIC_AA, opset)
        model.train(was_training)


def _native_vit_grids(model: nn.Module) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``(grid_size, patch_size)`` of each ViT in ``model`` that resizes its position embedding."""
    grids = []
    for module in model.modules():
        patch_embed = getattr(module, "patch_embed", None)
        if getattr(module, "dynamic_img_size", False) and hasattr(patch_embed, "grid_size"):
            grids.append((tuple(patch_embed.grid_size), tuple(patch_embed.patch_size)))
    return grids


def _example_size(model: nn.Module, input_size: tuple[int, int], dynamic: bool) -> tuple[int, int]:
    """The traced input size: ``input_size``, unless a dynamic export would freeze timm's
    "position embedding already fits" shortcut (see the module docstring)."""
    if not dynamic:
        return input_size
    divisor = model.size_divisor
    height, width = input_size
    padded = (-(-height // divisor) * divisor, -(-width // divisor) * divisor)
    for grid, patch in _native_vit_grids(model):
        if (padded[0] // patch[0], padded[1] // patch[1]) == grid:
            logger.info(
                "tracing at %dx%d instead of %dx%d: that size is the ViT's own %s grid",
                height + divisor,
                width,
                height,
                width,
                grid,
            )
            return height + divisor, width
    return input_size


def _check_segmentor(model: nn.Module) -> None:
    needed = ("size_divisor", "features", "head", "num_classes")
    missing = [a for a in needed if not hasattr(model, a)]
    if missing:
        raise ValueError(
            f"export_onnx needs an sdnseg Segmentor ({', '.join(needed)}); "
            f"{type(model).__name__} has no {missing}"
        )


def _check_target(path: Path) -> None:
    """Refuse, before the (slow) export, a target that cannot be written; the error names it."""
    if path.is_dir():
        raise ValueError(
            f"cannot write {path}: it is a directory; give a file, e.g. {path}/model.onnx"
        )
    folder = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: no write permission in {folder}")


def _finish(path: str, output_shape: Sequence[int | str]) -> None:
    """State the output's shape (the exporter's shape inference loses it at the resize to a
    computed size) and check the model."""
    import onnx

    proto = onnx.load(path)
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, output_shape, strict=True):
        if isinstance(value, str):
            dim.dim_param = value
        else:
            dim.dim_value = value
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    input_size: Sequence[int] = (512, 512),
    dynamic: bool = True,
    opset: int | None = None,
) -> Path:
    """Export a segmentor's eval-mode forward pass to ONNX.

    The graph takes ``images`` (N, 3, H, W) float32, already normalised, and returns ``logits``
    (N, num_classes, H, W) at the input resolution, as :meth:`Segmentor.forward` in eval mode.
    The file is written through :func:`sdnseg.io.atomic_write`, so ``path`` is never left
    half-written. The model's training mode is restored afterwards.

    Args:
        model: a :class:`~sdnseg.models.Segmentor` (any named model, with or without SDN).
        path: the ``.onnx`` file to write (parent directories are created).
        input_size: (H, W) of the example input that is traced; any size works with ``dynamic``.
        dynamic: batch, height and width are dynamic axes (``"batch"``, ``"height"``,
            ``"width"``); ``False`` fixes them to batch 1 and ``input_size``.
        opset: ONNX opset; default 18, the least that has the antialiased resize of timm's ViT
            position embedding. At least 14.

    Returns:
        The path written.

    Check the file with :func:`verify_onnx`.
    """
    _check_segmentor(model)
    if len(input_size) != 2 or min(int(s) for s in input_size) < 1:
        raise ValueError(f"input_size must be (H, W) with positive sizes, got {input_size!r}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be at least {MIN_OPSET}, got {opset}")
    path = Path(path)
    _check_target(path)
    height, width = _example_size(model, (int(input_size[0]), int(input_size[1])), dynamic)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros(1, 3, height, width, device=device)
    axes = {INPUT_NAME: _DYNAMIC_AXES, OUTPUT_NAME: _DYNAMIC_AXES} if dynamic else None
    sizes = (
        [_DYNAMIC_AXES[0], _DYNAMIC_AXES[2], _DYNAMIC_AXES[3]] if dynamic else [1, height, width]
    )
    with atomic_write(path) as tmp:
        with _exporting(model, opset), torch.no_grad():
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset,
            )
        _finish(str(tmp), [sizes[0], model.num_classes, *sizes[1:]])
    logger.info(
        "exported %s to %s (opset %d, dynamic=%s)", type(model).__name__, path, opset, dynamic
    )
    return path


def verify_onnx(model: nn.Module, path: str | os.PathLike, input: torch.Tensor) -> float:
    """Run the ONNX file with onnxruntime (CPUExecutionProvider) and PyTorch in eval mode.

    Args:
        model: the segmentor that was exported (its training mode is restored afterwards).
        path: the ``.onnx`` file.
        input: (N, 3, H, W) images; any N, H, W for a dynamic export.

    Returns:
        The largest absolute difference of the logits.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``input`` is not (N, 3, H, W), or the two outputs differ in shape.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    if input.dim() != 4 or input.shape[1] != 3:
        raise ValueError(f"input must be (N, 3, H, W), got shape {tuple(input.shape)}")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(input.to(device)).float().cpu().numpy()
    finally:
        model.train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: input.detach().float().cpu().numpy()}
    actual = session.run(None, feed)[0]
    if actual.shape != expected.shape:
        raise ValueError(
            f"{path}: ONNX output has shape {actual.shape}, PyTorch {expected.shape} "
            f"for input {tuple(input.shape)}"
        )
    return float(abs(actual - expected).max())


def export_hub(ckpt_path: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """A training checkpoint as a Hub-style folder (``Segmentor.save_pretrained``): weights,
    ``config.json`` with the checkpoint's classes, palette, normalisation and inference mode, and
    a model card with its last validation metrics (:data:`sdnseg.inference.hub.METRICS_KEY`).

    Raises:
        FileNotFoundError, ValueError: as :func:`sdnseg.load_model` for the checkpoint.
    """
    from sdnseg.inference import load_model, read_checkpoint
    from sdnseg.inference.hub import DATA_KEYS, METRICS_KEY

    checkpoint, record = read_checkpoint(ckpt_path, mmap=True)
    net = load_model(ckpt_path).net
    step, epoch = checkpoint.get("global_step"), checkpoint.get("epoch")
    data = {key: getattr(record.data, key) for key in DATA_KEYS}
    net.save_pretrained(
        directory,
        **data,
        inference=record.inference.to_dict(),
        metrics=checkpoint.get(METRICS_KEY) or {},
        metrics_source=f"Last validation of `{Path(ckpt_path).name}` (step {step}, epoch {epoch}):",
    )
    return Path(directory)


def main(argv: list[str]) -> int:
    """``sdnseg export``: a checkpoint (or a zoo model) to ONNX, checked with onnxruntime, or
    (``--format hub``) a checkpoint to a ``save_pretrained`` folder."""
    import argparse

    parser = argparse.ArgumentParser(prog="sdnseg export", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="an sdnseg checkpoint (sdnseg fit)")
    source.add_argument("--arch", help="a zoo model with random weights, e.g. fcn_r18d8_sdn")
    parser.add_argument("--num_classes", type=int, default=19, help="with --arch")
    parser.add_argument("--output", help="the .onnx file (--format hub: the folder) to write")
    parser.add_argument("target", nargs="?", help="the same as --output")
    parser.add_argument(
        "--format", choices=("onnx", "hub"), default="onnx", help="hub: save_pretrained folder"
    )
    parser.add_argument("--input_size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--static", action="store_true", help="fix batch 1 and --input_size")
    parser.add_argument("--opset", type=int, default=None)
    args = parser.parse_args(argv)
    if (args.output is None) == (args.target is None):
        parser.error("give the output once: --output PATH or PATH")
    args.output = args.output or args.target
    try:
        if args.format == "hub":
            if not args.ckpt_path:
                raise ValueError("--format hub needs --ckpt_path (a training checkpoint)")
            print(f"wrote {export_hub(args.ckpt_path, args.output)} (Segmentor.from_pretrained)")
            return 0
        if args.ckpt_path:
            from sdnseg.inference import load_model

            model = load_model(args.ckpt_path).net
        else:
            from sdnseg.models import create_model

            model = create_model(args.arch, args.num_classes)
        path = export_onnx(model, args.output, args.input_size, not args.static, args.opset)
        h, w = args.input_size
        check = torch.randn(1 if args.static else 2, 3, h if args.static else h + 32, w)
        if args.static:
            check = check[:, :, :h]
        difference = verify_onnx(model, path, check)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. the disk filled up or permissions changed mid-export
        print(f"error: cannot write {args.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(
        f"wrote {path}; onnxruntime vs PyTorch on {tuple(check.shape)}: max |diff| {difference:.2e}"
    )
    return 0
