"""``sdnseg visualize_sdn``: what the SDN of a trained model does to one image.

::

    sdnseg visualize_sdn --ckpt_path last.ckpt --image street.jpg
    sdnseg visualize_sdn --ckpt_path last.ckpt --image street.jpg --points "120,40;120,60;200,300"

Writes two figures to ``--output_dir`` (see :mod:`sdnseg.viz.sdn_features` and
:mod:`sdnseg.viz.operator_responses`):

* ``sdn_stages.png``: per SDN stage, the input U, guidance V, operator output Y and SDN output F_sdn
  as their first three principal components, and the learned similarities S (the paper's Fig. 6);
* ``operator_response.png``: the model's first-layer kernel applied to the image as a vanilla conv,
  a CDC (θ = 0.7) and an SDC guided by the model's class probabilities, compared at three points
  (two in one predicted region across an image edge, one in another region; the paper's Fig. 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

__all__ = ["main", "parse_points"]


def parse_points(text: str) -> list[tuple[int, int]]:
    """``"y,x;y,x"`` -> ``[(y, x), (y, x)]`` (image pixels, row first)."""
    points = []
    for item in text.split(";"):
        if not item.strip():
            continue
        parts = item.split(",")
        try:
            if len(parts) != 2:
                raise ValueError
            points.append((int(parts[0]), int(parts[1])))
        except ValueError:
            raise ValueError(
                f"--points takes 'y,x;y,x;...' in pixels, got {item.strip()!r}"
            ) from None
    if not points:
        raise ValueError(f"--points takes 'y,x;y,x;...' in pixels, got {text!r}")
    return points


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sdnseg visualize_sdn",
        description=(
            "What the SDN of a trained model does to one image: writes sdn_stages.png (each SDN "
            "stage's U, V, Y, F_sdn and similarities S) and operator_response.png (vanilla conv, "
            "CDC and SDC with one kernel, compared at three points)."
        ),
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint of a *_sdn model")
    parser.add_argument("--image", required=True, help="an RGB image file")
    parser.add_argument(
        "--points",
        default=None,
        help="'y,x;y,x;y,x' pixels to compare the operators at (default: picked automatically)",
    )
    parser.add_argument("--output_dir", default="outputs/visualize")
    parser.add_argument("--device", default="cpu", help="e.g. cpu or cuda")
    parser.add_argument("--theta", type=float, default=0.7, help="of the CDC")
    parser.add_argument(
        "--lam",
        type=float,
        default=None,
        help="of the SDC in operator_response.png (default: auto)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    from sdnseg.data import read_image
    from sdnseg.inference import load_model
    from sdnseg.viz import operator_responses as ops
    from sdnseg.viz import sdn_features

    points = parse_points(args.points) if args.points is not None else None
    # (3, H, W) uint8 -> the (H, W, 3) array the figures and the predictor take.
    rgb = read_image(Path(args.image)).permute(1, 2, 0).contiguous().numpy()
    if points is not None:
        ops.check_points(points, rgb.shape[:2])
    predictor = load_model(args.ckpt_path, map_location=args.device)
    try:
        sdn_features.sdn_modules(predictor.net)
    except ValueError as err:
        raise ValueError(f"{args.ckpt_path}: {err}") from None
    out = Path(args.output_dir)

    stages = sdn_features.capture_sdn(predictor.net, predictor.preprocess(rgb))
    stages_path = sdn_features.sdn_figure(out / "sdn_stages.png", rgb, stages)
    print(f"SDN stages ({len(stages)}): {stages_path}")

    probs = predictor.predict_proba(rgb)
    kernel = ops.stem_kernel(predictor.net)
    result = ops.operator_response_figure(
        out / "operator_response.png",
        rgb,
        points,
        guidance=probs,
        kernel=kernel,
        mean=predictor.mean,
        std=predictor.std,
        theta=args.theta,
        lam=args.lam,
        palette=predictor.palette,
    )
    source = "the backbone's first conv" if kernel is not None else "a fixed seeded random kernel"
    print(f"operator responses ({source}): {result.path}")
    print("mean |response| at the points (÷ the operator's 99th percentile over the image):")
    for i, (name, (y, x)) in enumerate(zip(result.names, result.points, strict=True)):
        cls = result.labels[i]
        cls_name = predictor.classes[cls] if cls < len(predictor.classes) else str(cls)
        cells = "  ".join(
            f"{op} {result.values[op][i]:.4g} ({result.relative[op][i]:.2f})"
            for op in ops.OPERATOR_NAMES
        )
        print(f"  {name} (y={y}, x={x}, {cls_name}): {cells}")
    return 0


def main(argv: list[str]) -> int:
    """``sdnseg visualize_sdn``; returns the exit code (1 with ``error: ...`` for a user error)."""
    args = parse_args(argv)
    try:
        with torch.no_grad():
            return run(args)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("SDNSEG_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
