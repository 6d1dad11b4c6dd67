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
    # A hand-written document whose quoted report sections sdnseg study keeps in step
    # (sdnseg.studies.doc_blocks)
    doc: docs/my_study.md
    # The paper's claims, each checked on one paired comparison of the study's runs
    claims:
      - {claim: "SDN raises boundary F at 1 px", paper: "Table 2, OCRNet, Cityscapes val",
         metric: BF@1px, paper_delta: 0.043, variant: fcn_r18d8_sdn, reference: fcn_r18d8}

Runs listed together that share a baseline go seed by seed (baseline seed 0, each variant seed 0,
baseline seed 1, ...), so a cut-off study still has paired seeds and every variant at seed 0.
A run's ``tier`` (default 0, never decreasing down the file) marks a priority: no group spans two
tiers, so every seed of one tier is made before the next tier starts.

Three kinds of run:

* a fit (the default): ``sdnseg fit`` then ``sdnseg test`` of its last checkpoint;
* an evaluation (``test_of: RUN``): no fit, ``sdnseg test`` of that run's checkpoint at the same
  seed with ``postprocess`` (``crf``, or ``segfix`` with the best checkpoint of the SegFix network
  fitted as run ``segfix_run``); its arch, overrides and seeds are the tested run's, and its
  metrics are the post-processed ones. It waits until what it tests has finished, and the
  runner makes that again where this machine lacks what the re-test reads (a DenseCRF re-test
  the checkpoint, a SegFix re-test the recorded label maps and the SegFix network's checkpoint);
* a command (``command: [train_inverseform, ...]``): one ``sdnseg`` command per seed, for what
  later runs read (InverseForm's inverse-transformation network); no metrics.

Both the runner (:mod:`sdnseg.studies.runner`) and the report (:mod:`sdnseg.studies.report`)
import this module; the runner imports the report, never the other way round. Nothing here
imports torch until a data module is asked for, so reading a study file stays cheap.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from sdnseg.engine.datamodule import SegmentationDataModule


@dataclass
class RunSpec:
    """One configuration of the matrix; ``pair`` names the baseline it is compared with.

    ``tier``, ``test_of``, ``postprocess``, ``segfix_run`` and ``command``: see the module
    docstring.
    """

    name: str
    arch: str
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    pair: str | None = None
    args: list[str] = field(default_factory=list)
    tier: int = 0
    test_of: str | None = None
    postprocess: str | None = None
    segfix_run: str | None = None
    command: list[str] | None = None

    @property
    def kind(self) -> str:
        """``"fit"``, ``"test"`` (an evaluation of ``test_of``) or ``"command"``."""
        if self.command is not None:
            return "command"
        return "fit" if self.test_of is None else "test"


@dataclass
class Claim:
    """One claim of the paper, checked on the study's runs: ``variant`` minus ``reference`` in
    ``metric`` (a fraction, as in the results), seed by seed, against the paper's
    ``paper_delta`` (``None`` where the paper argues the direction, ``+``, without a number)."""

    claim: str
    paper: str
    metric: str
    variant: str
    reference: str
    paper_delta: float | None = None


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
    claims: list[Claim] = field(default_factory=list)
    doc: Path | None = None

    def run(self, name: str) -> RunSpec:
        """The run called ``name``."""
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(f"no run {name!r} in the study")

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
        runs: list[RunSpec] = []
        for entry in raw["runs"]:
            unknown = set(entry) - known
            if unknown:
                raise ValueError(f"{path}: run {entry.get('name')!r} has unknown keys {unknown}")
            runs.append(RunSpec(**_inherit(path, entry, runs)))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: run names must be unique, got {names}")
        by_name = {r.name: r for r in runs}
        for run in runs:
            _check_run(path, run, by_name)
        tiers = [r.tier for r in runs]
        if tiers != sorted(tiers):
            raise ValueError(f"{path}: runs must be listed by tier, lowest first, got {tiers}")
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
        claims = [_claim(path, entry, by_name) for entry in raw.get("claims", [])]
        doc = Path(raw["doc"]) if raw.get("doc") else None
        if doc is not None and not doc.is_file():  # found now, not after the first long fit
            raise FileNotFoundError(f"{path}: doc {doc} not found (paths are from the repo root)")
        return cls(
            config=raw["config"],
            output_dir=Path(raw["output_dir"]),
            results=Path(raw["results"]),
            runs=runs,
            test_scales=list(raw.get("test_scales", [1.0])),
            test_flip=bool(raw.get("test_flip", False)),
            args=[str(a) for a in raw.get("args", [])],
            qualitative=qualitative,
            claims=claims,
            doc=doc,
        )


POSTPROCESSORS = ("crf", "segfix")


def _inherit(path: Path, entry: dict[str, Any], earlier: list[RunSpec]) -> dict[str, Any]:
    """An evaluation run's arch, overrides and seeds from the run it tests (listed before it);
    a command has no arch."""
    if entry.get("command") is not None:
        return {"arch": "", **entry}
    if entry.get("test_of") is None:
        return entry
    tested = next((r for r in earlier if r.name == entry["test_of"]), None)
    if tested is None:
        raise ValueError(
            f"{path}: run {entry.get('name')!r} tests {entry['test_of']!r}, which is not a run "
            "listed before it"
        )
    inherited = {"arch": tested.arch, "overrides": tested.overrides, "seeds": tested.seeds}
    return {**inherited, **entry}


def _check_run(path: Path, run: RunSpec, runs: dict[str, RunSpec]) -> None:
    where = f"{path}: run {run.name!r}"
    if run.pair is not None and run.pair not in runs:
        raise ValueError(f"{where} pairs with unknown run {run.pair!r}")
    if run.segfix_run is not None and runs.get(run.segfix_run, run).kind != "fit":
        raise ValueError(f"{where}: segfix_run must name a fitted run, not {run.segfix_run!r}")
    if run.command is not None and (run.test_of or run.pair or run.postprocess):
        raise ValueError(f"{where}: a command has no test_of, pair or postprocess")
    if run.test_of is not None and runs[run.test_of].kind != "fit":
        raise ValueError(f"{where}: test_of must name a fitted run, not {run.test_of!r}")
    if (run.test_of is None) != (run.postprocess is None):
        raise ValueError(f"{where}: test_of and postprocess go together (an evaluation run)")
    if run.postprocess is not None and run.postprocess not in POSTPROCESSORS:
        raise ValueError(f"{where}: postprocess must be one of {POSTPROCESSORS}")
    if (run.postprocess == "segfix") != (run.segfix_run is not None):
        raise ValueError(f"{where}: postprocess segfix and segfix_run go together")
    if run.test_of is not None and not set(run.seeds) <= set(runs[run.test_of].seeds):
        raise ValueError(
            f"{where}: seeds {run.seeds} must be among those of {run.test_of!r} "
            f"({runs[run.test_of].seeds}), whose checkpoints it tests"
        )


# The test metrics a claim can name (sdnseg test's keys; _skip and _ms as the report uses them).
CLAIM_METRIC = re.compile(
    r"(mIoU|mAcc|aAcc|mBIoU|BF@\d+px|trimap_mIoU@\d+px|IoU/.+?)(_skip)?(_ms)?"
)


def _claim(path: Path, entry: dict[str, Any], runs: dict[str, RunSpec]) -> Claim:
    known = set(Claim.__dataclass_fields__)
    needed = {"claim", "paper", "metric", "variant", "reference"}
    if not isinstance(entry, dict) or not needed <= set(entry):
        raise ValueError(
            f"{path}: a claim needs claim, paper, metric, variant and reference, got {entry!r}"
        )
    where = f"{path}: claim {entry['claim']!r}"
    if set(entry) - known:
        raise ValueError(f"{where} has unknown keys {set(entry) - known}")
    for key in ("variant", "reference"):
        if entry[key] not in runs:
            raise ValueError(f"{where} names unknown run {entry[key]!r}")
    if not CLAIM_METRIC.fullmatch(str(entry["metric"])):
        raise ValueError(f"{where}: {entry['metric']!r} is not a test metric (e.g. mIoU, BF@1px)")
    delta = entry.get("paper_delta")
    if delta is not None and not abs(delta) < 1:
        raise ValueError(f"{where}: paper_delta is a fraction (0.043 for +4.3 points), got {delta}")
    shared = set(runs[entry["variant"]].seeds) & set(runs[entry["reference"]].seeds)
    if len(shared) < 2:
        raise ValueError(
            f"{where}: {entry['variant']!r} and {entry['reference']!r} share the seeds "
            f"{sorted(shared)}; a paired test needs at least two"
        )
    return Claim(**entry)


def _goes_with(block: list[RunSpec], run: RunSpec) -> bool:
    """Whether ``run`` shares the block's baseline, or pairs with the block's only run, in the
    same tier."""
    first = block[0]
    return (
        run.pair is not None
        and run.tier == first.tier
        and (run.pair == (first.pair or first.name) or (len(block) == 1 and run.pair == first.name))
    )


def schedule(study: Study) -> list[tuple[RunSpec, int]]:
    """The order runs are made in: the file's order, except that consecutive runs of one tier
    sharing a baseline (with that baseline, when listed right before them) go seed by seed, all
    of seed 0 first; so does a run with the run just before it, if it pairs with it.

    A re-test that needs nothing but its tested checkpoint (``test_of`` with DenseCRF) follows
    that (run, seed) at once, whatever its tier: the checkpoint exists only on the machine that
    fitted it (a record keeps no weights), and the next session's machine will not have it."""
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
    follows = [(r, s) for r, s in order if r.test_of is not None and r.segfix_run is None]
    # (Study.load checked that a re-test's seeds are among its tested run's.)
    order = [item for item in order if item not in follows]
    for run, seed in follows:
        tested = next(i for i, (r, s) in enumerate(order) if r.name == run.test_of and s == seed)
        order.insert(tested + 1, (run, seed))
    return order


def run_dir(study: Study, run: RunSpec, seed: int) -> Path:
    """The folder of one (configuration, seed): its fit versions, test logs and result."""
    return study.output_dir / run.name / f"seed{seed}"


def latest_checkpoint(folder: Path, pattern: str = "last.ckpt") -> Path | None:
    """The newest ``version_*/checkpoints/<pattern>`` under a run's folder."""
    candidates = sorted(folder.glob(f"version_*/checkpoints/{pattern}"), key=os.path.getmtime)
    return candidates[-1] if candidates else None


def best_checkpoint(folder: Path) -> Path | None:
    """The best checkpoint of a run's folder: the newest ``best-*.ckpt`` (the checkpoint
    callback writes one only on a new best, and its tracking survives resumes)."""
    return latest_checkpoint(folder, "best-*.ckpt")


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
