"""Where a training step's time goes: torch.profiler over study configurations, quiet cores.

``benchmarks/train_speed.py`` times whole steps against each other; this says, for the +SDN
overhead it finds, how much is the SDC autograd function (``_SDC`` forward and
``_SDCBackward``, GEMMs and element-wise work inside) and which ATen ops dominate. The same
step closure as ``train_speed.py`` (forward with the auxiliary head, the study's loss, backward,
SGD update on a fixed random batch). The profiler adds its own overhead per op, so the shares
are the figures to read; the plain s/step is timed without it.

Run: ``python benchmarks/profile_train_step.py`` (about 1 minute on 2 idle cores) ->
``benchmarks/results/train_step_profile_<name>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, write_atomic  # noqa: E402
from sdnseg.studies.spec import Study, study_shape  # noqa: E402
from train_speed import training_step  # noqa: E402

SDC_EVENTS = ("_SDC", "_SDCBackward")


def profile(step, steps: int) -> dict:
    """Self CPU time per ATen op and the SDC functions' total time, per step (seconds)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6 / steps
    ops = sorted(
        ({"op": e.key, "self_s": e.self_cpu_time_total / 1e6 / steps, "calls": e.count // steps}
         for e in events),
        key=lambda r: -r["self_s"],
    )  # fmt: skip
    sdc = sum(e.cpu_time_total for e in events if e.key in SDC_EVENTS) / 1e6 / steps
    return {"profiled_s_per_step": total, "sdc_s_per_step": sdc, "top_ops": ops[:15]}


def markdown(rows: list[dict], env: dict) -> str:
    lines = [
        "# Where a training step's time goes (torch.profiler, CPU)",
        "",
        f"torch {env['torch']}, {env['threads']} threads, {env['cpu']}, {env['date']}; "
        "the study's batch and crop, random data. s/step timed without the profiler; shares "
        "from the profiled steps (the profiler's own overhead included in their total).",
        "",
        "| configuration | s/step | × first | profiled s/step | SDC fwd+bwd | SDC share | top ops "
        "(self s/step) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = rows[0]["s_per_step"]
    for r in rows:
        top = ", ".join(f"{o['op']} {o['self_s']:.3f}" for o in r["top_ops"][:5])
        lines.append(
            f"| {r['name']} | {r['s_per_step']:.3f} | {r['s_per_step'] / base:.3f} "
            f"| {r['profiled_s_per_step']:.3f} | {r['sdc_s_per_step']:.3f} "
            f"| {r['sdc_s_per_step'] / r['profiled_s_per_step']:.1%} | {top} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="configs/studies/camvid.yaml")
    parser.add_argument("--only", nargs="*", default=["semfpn_r18", "semfpn_r18_sdn"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--name", default="semfpn_r18")
    parser.add_argument("--results_dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    study = Study.load(args.study)
    fit = yaml.safe_load(Path(study.config).read_text())
    num_classes = study_shape(study)[0]
    rows = []
    for name in args.only:
        step = training_step(study, name, num_classes, fit)
        for _ in range(3):  # warm-up: workspaces, oneDNN primitives
            step()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - start) / args.steps
        rows.append({"name": name, "s_per_step": seconds, **profile(step, args.steps)})
        print(f"{name}: {seconds:.3f} s/step", flush=True)
    env = environment()
    out = args.results_dir / f"train_step_profile_{args.name}"
    write_atomic(out.with_suffix(".json"), json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    write_atomic(out.with_suffix(".md"), markdown(rows, env))
    print(markdown(rows, env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
