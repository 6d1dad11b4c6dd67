"""The study file of ``sdnseg study``: its run matrix, the order of the runs and their folders.

A study file (see ``configs/studies/camvid.yaml``)::

    config: configs/studies/camvid_fcn.yaml   # the frozen sdnseg fit config shared by all runs
    output_dir: runs/study_camvid             # checkpoints and logs (not for git)
    results: benchmarks/results/camvid_study  # <results>.json, .md and figures
    test_scales: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    test_flip: true
    args: ["--data.root", "../shared/data/camvid"]   # extra arguments for every command
    runs:
      - {name: fcn_r18d8, arch: fcn_r18d8, seeds: [0, 1, 2]}
      - {name: fcn_r18d8_sdn, arch: fcn_r18d8_sdn, seeds: [0, 1, 2], pair: fcn_r18d8}
      - {name: fcn_sdn_conv, arch: fcn_r18d8_sdn, overrides: {operator: conv}, seeds: [0, 1]}
    # Figure: image, ground truth, baseline and variant with error maps, for these test images
    qualitative: {variants: [fcn_r18d8_sdn], images: [0, 25, 50, 75], seed: 0}

Runs listed together that share a baseline go seed by seed (baseline seed 0, each variant seed 0,
baseline seed 1, ...), so a cut-off study still has paired seeds and every variant at seed 0.

Both the runner (:mod:`sdnseg.studies.runner`) and the report (:mod:`sdnseg.studies.report`)
import this module; the runner imports the report, never the other way round. Nothing here
imports torch until a data module is asked for, so reading a study file stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sdnseg.engine.datamodule import SegmentationDataModule


@dataclass
class RunSpec:
    """One configuration of the matrix; ``pair`` names the baseline it is compared with."""

    name: str
    arch: str
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    pair: str | None = None
    args: list[str] = field(default_factory=list)


@dataclass
class Study:
    """A parsed study file: the shared fit config, the runs, and where runs and results go."""

    config: str
    output_dir: Path
    results: Path
    runs: list[RunSpec]
    test_scales: list[float] = field(default_factory=lambda: [1.0])
    test_flip: bool = False
    args: list[str] = field(default_factory=list)
    qualitative: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Study:
        """Read and check a study file; raises naming the file and the offending entry."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        missing = {"config", "output_dir", "results", "runs"} - set(raw)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}")
        known = {f for f in RunSpec.__dataclass_fields__}
        runs = []
        for entry in raw["runs"]:
            unknown = set(entry) - known
            if unknown:
                raise ValueError(f"{path}: run {entry.get('name')!r} has unknown keys {unknown}")
            runs.append(RunSpec(**entry))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: run names must be unique, got {names}")
        for run in runs:
            if run.pair is not None and run.pair not in names:
                raise ValueError(f"{path}: run {run.name!r} pairs with unknown run {run.pair!r}")
        qualitative = raw.get("qualitative") or {}
        unknown = set(qualitative) - {"variants", "images", "seed"}
        if unknown:
            raise ValueError(f"{path}: qualitative has unknown keys {unknown}")
        paired = {r.name for r in runs if r.pair is not None}
        for variant in qualitative.get("variants", []):
            if variant not in paired:
                raise ValueError(
                    f"{path}: qualitative variant {variant!r} is not a run with a pair"
                )
        return cls(
            config=raw["config"],
            output_dir=Path(raw["output_dir"]),
            results=Path(raw["results"]),
            runs=runs,
            test_scales=list(raw.get("test_scales", [1.0])),
            test_flip=bool(raw.get("test_flip", False)),
            args=[str(a) for a in raw.get("args", [])],
            qualitative=qualitative,
        )


def _goes_with(block: list[RunSpec], run: RunSpec) -> bool:
    """Whether ``run`` shares the block's baseline, or pairs with the block's only run."""
    first = block[0]
    return run.pair is not None and (
        run.pair == (first.pair or first.name) or (len(block) == 1 and run.pair == first.name)
    )


def schedule(study: Study) -> list[tuple[RunSpec, int]]:
    """The order runs are made in: the file's order, except that consecutive runs sharing a
    baseline (with that baseline, when listed right before them) go seed by seed, all of seed 0
    first; so does a run with the run just before it, if it pairs with it."""
    blocks: list[list[RunSpec]] = []
    for run in study.runs:
        if blocks and _goes_with(blocks[-1], run):
            blocks[-1].append(run)
        else:
            blocks.append([run])
    order = []
    for block in blocks:
        seeds = sorted({seed for run in block for seed in run.seeds})
        order += [(run, seed) for seed in seeds for run in block if seed in run.seeds]
    return order


def run_dir(study: Study, run: RunSpec, seed: int) -> Path:
    """The folder of one (configuration, seed): its fit versions, test logs and result."""
    return study.output_dir / run.name / f"seed{seed}"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest ``version_*/checkpoints/last.ckpt`` under a run's folder."""
    candidates = sorted(folder.glob("version_*/checkpoints/last.ckpt"), key=os.path.getmtime)
    return candidates[-1] if candidates else None


def study_datamodule(study: Study) -> SegmentationDataModule:
    """The data module of the study's fit config (its test split is what ``sdnseg test`` scores)."""
    from sdnseg.engine.datamodule import SegmentationDataModule

    config = yaml.safe_load(Path(study.config).read_text()) or {}
    return SegmentationDataModule(**config.get("data", {}))


def study_shape(study: Study) -> tuple[int, tuple[int, int], int]:
    """Number of classes, evaluation size and batches per epoch, from the fit config."""
    dm = study_datamodule(study)
    size = dm.base_size or (dm.hparams.synthetic_size,) * 2
    return dm.num_classes, (int(size[0]), int(size[1])), len(dm.train_dataloader())
