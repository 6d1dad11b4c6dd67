"""The study's qualitative figure: image, ground truth, baseline and +SDN with their error maps.

On fixed test images chosen in the study file (not by outcome), at the figure's seed, single
scale. The label maps come from the runs' committed records (:mod:`sdnseg.studies.records`), so
the figure can be drawn after the checkpoints are gone; a run without a record's maps is
predicted from its checkpoint, where that is still on the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sdnseg.studies.records import read_qualitative
from sdnseg.studies.spec import RunSpec, Study, latest_checkpoint, run_dir, study_datamodule

if TYPE_CHECKING:
    from sdnseg.engine.datamodule import SegmentationDataModule

__all__ = ["qualitative", "qualitative_labels"]


def _qualitative_images(study: Study, dm: SegmentationDataModule) -> tuple[list[int], list, list]:
    """The study's qualitative test images: indices, RGB arrays and target masks."""
    dataset = dm.raw_dataset(dm.test_split)
    indices = [i for i in study.qualitative.get("images", [0]) if 0 <= i < len(dataset)]
    items = [dataset[i] for i in indices]
    images = [item["image"].permute(1, 2, 0).numpy() for item in items]
    return indices, images, [item["mask"].numpy() for item in items]


def qualitative_labels(study: Study, run: RunSpec, seed: int) -> dict | None:
    """A fit run's predictions for the qualitative images (kept in its record), when the study
    draws it: a variant or a variant's pair, at the figure's seed."""
    spec, names = study.qualitative, set()
    for variant in spec.get("variants", []):
        names |= {variant, study.run(variant).pair}
    if run.kind != "fit" or run.name not in names or seed != int(spec.get("seed", 0)):
        return None
    checkpoint = latest_checkpoint(run_dir(study, run, seed))
    if checkpoint is None:
        return None
    from sdnseg.inference import load_model

    indices, images, _ = _qualitative_images(study, study_datamodule(study))
    model = load_model(checkpoint)
    return {i: model.predict(image).numpy() for i, image in zip(indices, images, strict=True)}


def qualitative(study: Study, results: list[dict], dm: SegmentationDataModule) -> list[Path]:
    """Per variant in ``study.qualitative``: image, ground truth, baseline and variant with their
    error maps, on fixed test images (chosen in the study file, not by outcome), single scale.

    Drawn here rather than in the report because it reads the runs' records (the label maps
    they predicted), or their checkpoints where a record has none."""
    from sdnseg.inference import load_model
    from sdnseg.viz.segmentation import comparison_figure

    spec = study.qualitative
    if not spec.get("variants"):
        return []
    seed = int(spec.get("seed", 0))
    finished = {(r["name"], r["seed"]) for r in results}
    specs = {run.name: run for run in study.runs}
    indices, images, targets = _qualitative_images(study, dm)
    written = []
    for variant in spec["variants"]:
        names = (specs[variant].pair, variant)
        if any((name, seed) not in finished for name in names):
            continue
        predictions = {}
        for name in names:
            labels = read_qualitative(study, specs[name], seed, indices)
            checkpoint = latest_checkpoint(run_dir(study, specs[name], seed))
            if labels is None and checkpoint is not None:
                model = load_model(checkpoint)
                labels = [model.predict(image).numpy() for image in images]
            if labels is not None:
                predictions[f"{name} (seed {seed})"] = labels
        path = Path(f"{study.results}_qualitative_{variant}.png")
        if len(predictions) == 2:
            palette, ignore = dm.palette, dm.ignore_index
            written.append(comparison_figure(path, images, targets, predictions, palette, ignore))
        elif path.is_file():  # neither a record nor a checkpoint: the figure drawn before stays
            written.append(path)
    return written
