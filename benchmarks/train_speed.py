"""Training-step time of every configuration of a study, in turns on a quiet machine.

The study's own runs record seconds per epoch from their logs, but they share two cores with
whatever else runs that hour, so their times say as much about the machine as about the model.
This benchmark times one training step (forward with the auxiliary head, the study's loss,
backward, SGD update) of each configuration of the study file on the study's batch and crop,
random images and labels, no data loading and no validation. Configurations take turns in every
round, so that a burst of load hits all of them alike; the load average before and after is
recorded. The anchor is each variant's baseline (its ``pair`` in the study file), measured in
the same run. The optimiser, loss settings, batch and crop come from the study's fit config.

Run: ``python benchmarks/train_speed.py`` (about 5 minutes on 2 cores; stop the study runner
first and let the load settle) -> ``benchmarks/results/train_speed_<study>.{json,md}``;
``--crop 360 480 --batch 8`` times another input than the study's.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, write_atomic  # noqa: E402
from sdnseg.engine.module import SegmentationModule  # noqa: E402
from sdnseg.models import create_model  # noqa: E402
from sdnseg.models.losses import MaskFormerLoss, segmentation_loss  # noqa: E402
from sdnseg.studies.spec import RunSpec, Study, study_shape  # noqa: E402


def training_step(study: Study, name: str, num_classes: int, fit: dict):
    """A closure running one optimiser step of configuration ``name`` on a fixed random batch."""
    run = next(r for r in study.runs if r.name == name)
    if run.args:
        raise ValueError(
            f"{name}: extra fit arguments {run.args} are not timed here; only overrides"
        )
    data, model_args = fit["data"], fit.get("model", {})
    torch.manual_seed(0)
    net = create_model(run.arch, num_classes=num_classes, pretrained=False, **run.overrides)
    net.train()
    # The module's own defaults fill what the fit config leaves out.
    module_defaults = {
        k: v.default
        for k, v in inspect.signature(SegmentationModule.__init__).parameters.items()
        if v.default is not inspect.Parameter.empty
    }
    args = module_defaults | model_args
    if args["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(
            net.parameters(),
            lr=args["lr"],
            momentum=args["momentum"],
            weight_decay=args["weight_decay"],
        )
    else:
        optimizer = torch.optim.AdamW(
            net.parameters(),
            lr=args["lr"],
            betas=tuple(args["betas"]),
            weight_decay=args["weight_decay"],
        )
    h, w = data["crop_size"]
    images = torch.randn(data["batch_size"], 3, h, w)
    masks = torch.randint(0, num_classes, (data["batch_size"], h, w))

    # A MaskFormer trains with its set loss (Hungarian matching), as the module gives it one.
    criterion = (
        MaskFormerLoss(ignore_index=args["ignore_index"])
        if net.config.decoder == "maskformer"
        else None
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        outputs = net.forward_train(images)
        if criterion is not None:
            loss = criterion(outputs, masks)
        else:
            loss = segmentation_loss(
                outputs,
                masks,
                ignore_index=args["ignore_index"],
                aux_weight=args["aux_weight"],
                avg_non_ignore=args["avg_non_ignore"],
            )
        loss.backward()
        optimizer.step()

    return step


def markdown(rows: list[dict], env: dict, args: argparse.Namespace, batches: int) -> str:
    by_name = {r["name"]: r for r in rows}
    lines = [
        f"# Training-step time of {', '.join(f'`{a}`' for a in args.archs)} (fit config of "
        f"`{args.study}`)"
        if args.archs
        else f"# Training-step time of the configurations of `{args.study}`",
        "",
        f"{env['cpu']} ({env['cpu_count']} cores), {env['threads']} threads, torch "
        f"{env['torch']}, {env['date']}; load average {env['load_before']:.2f} before, "
        f"{env['load_after']:.2f} after.",
        f"One optimiser step (forward with auxiliary head, loss, backward, update) on a batch of "
        f"{args.batch} at {args.crop[0]}x{args.crop[1]}, random data, no loading or validation. "
        f"Median (and minimum) of {args.rounds} rounds x {args.steps} steps after "
        f"{args.warmup} warm-up steps, configurations in turns. s/epoch = median x {batches} "
        "batches. `x baseline`: median over its pair's median in this run.",
        "",
        "| configuration | arch | overrides | s/step | min | s/epoch | x baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = by_name.get(r["pair"]) if r["pair"] else None
        ratio = f"{r['median_s'] / base['median_s']:.3f}" if base else "—"
        overrides = ", ".join(f"{k}={v}" for k, v in r["overrides"].items()) or "—"
        lines.append(
            f"| {r['name']} | {r['arch']} | {overrides} | {r['median_s']:.3f} | {r['min_s']:.3f} "
            f"| {r['median_s'] * batches:.0f} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="configs/studies/camvid.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="configuration names (default: all)")
    parser.add_argument("--name", help="result name (default train_speed_<study>)")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--crop", type=int, nargs=2, metavar=("H", "W"), help="default: the fit config's crop"
    )
    parser.add_argument("--batch", type=int, help="default: the fit config's batch size")
    parser.add_argument(
        "--archs",
        nargs="*",
        help="time these zoo models instead of the study's runs (X_sdn pairs with X), with the "
        "study's fit config",
    )
    args = parser.parse_args(argv)

    study = Study.load(Path(args.study))
    if args.archs:
        study.runs = [
            RunSpec(a, a, [0], pair=a.removesuffix("_sdn") if a.endswith("_sdn") else None)
            for a in args.archs
        ]
    fit = yaml.safe_load(Path(study.config).read_text())
    # Another crop or batch is timed by changing the fit config the steps are built from.
    fit["data"]["crop_size"] = args.crop = args.crop or fit["data"]["crop_size"]
    fit["data"]["batch_size"] = args.batch = args.batch or fit["data"]["batch_size"]
    torch.use_deterministic_algorithms(bool(fit.get("trainer", {}).get("deterministic", False)))
    # Classes and batches per epoch as the study's runs see them (reads the dataset's lists).
    num_classes, _, batches = study_shape(study)
    names = args.only or [r.name for r in study.runs]
    env = environment() | {"load_before": os.getloadavg()[0]}

    steps = {}
    for name in names:
        steps[name] = training_step(study, name, num_classes, fit)
        for _ in range(args.warmup):  # allocator, caches; on CUDA Triton compiles and autotunes
            steps[name]()
        print(f"[train_speed] {name}: warmed up", flush=True)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[name]()
            times[name].append((time.perf_counter() - start) / args.steps)
        print(f"[train_speed] round {round_ + 1}/{args.rounds}", flush=True)
    env["load_after"] = os.getloadavg()[0]

    runs = {r.name: r for r in study.runs}
    rows = [
        {
            "name": name,
            "arch": runs[name].arch,
            "overrides": runs[name].overrides,
            "pair": runs[name].pair,
            "median_s": statistics.median(times[name]),
            "min_s": min(times[name]),
            "times_s": times[name],
        }
        for name in names
    ]
    result_name = args.name or f"train_speed_{Path(args.study).stem}"
    text = markdown(rows, env, args, batches)
    record = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    payload = {"environment": env, "args": record, "batches_per_epoch": batches, "rows": rows}
    write_atomic(args.results_dir / f"{result_name}.json", json.dumps(payload, indent=2) + "\n")
    write_atomic(args.results_dir / f"{result_name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
