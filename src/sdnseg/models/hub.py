"""Hugging Face Hub-style save and load of zoo segmentors, on ``huggingface_hub.PyTorchModelHubMixin``.

``model.save_pretrained(dir)`` writes three files, each atomically (:func:`sdnseg.io.atomic_write`):

- ``model.safetensors``: the weights (``safetensors.torch.save_model``, as the mixin does);
- ``config.json``: what rebuilds the network and uses it (:data:`CONFIG_KEYS`): the zoo name
  (``arch``) and the :func:`~sdnseg.models.create_model` overrides, the class count, names and
  palette, the normalisation, the test resize, the unlabelled value, the inference mode and the
  metrics of the checkpoint it came from;
- ``README.md``: a model card (:data:`MODEL_CARD`) with those metrics.

``Segmentor.from_pretrained(dir_or_repo_id)`` is the mixin's: it reads ``config.json`` (from the
folder, or downloads it from the Hub) and calls :meth:`SegmentorHubMixin._from_pretrained`, which
rebuilds the zoo model and loads the weights strictly. ``push_to_hub`` is the mixin's too (it
saves through :meth:`save_pretrained` into a temporary folder and uploads it).

Why not the mixin's own ``save_pretrained``: it writes ``config.json`` and the weights in place
(a crash leaves half a file), and never rewrites an existing ``README.md``, so a second save into
a folder would keep the first model's card and metrics.

The loaders of this module and :mod:`sdnseg.integrations.smp` share :func:`hub_file` (a file of a
local folder or of a Hub repository) and :func:`load_weights` (strict, with errors naming the file
and the tensors at fault).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin, hf_hub_download
from torch import nn

from sdnseg.data.base import shown
from sdnseg.data.info import default_palette
from sdnseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sdnseg.io import atomic_write

__all__ = ["CONFIG_KEYS", "HUB_FORMAT", "SegmentorHubMixin", "hub_file", "load_weights"]

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"
HUB_FORMAT = 1  # config.json's "sdnseg_hub_format"
# config.json's keys; none is an argument of Segmentor.__init__, which the mixin would pass it to.
CONFIG_KEYS = (
    "sdnseg_hub_format",
    "arch",  # zoo name, e.g. "fcn_r18d8_sdn"
    "overrides",  # create_model overrides
    "num_classes",
    "classes",
    "palette",
    "mean",  # normalisation, 0..255 scale
    "std",
    "base_size",  # test resize (H, W), or None for full size
    "ignore_index",
    "inference",  # {"mode", "crop_size", "stride"}
    "metrics",  # {name: value} of the checkpoint, or {}
)

MODEL_CARD = """---
{{ card_data }}
---

# {{ arch }} (sdnseg)

A semantic segmentation model of sdnseg: the zoo model `{{ arch }}`
{%- if overrides %} with overrides `{{ overrides }}`{% endif %}, {{ num_classes }} classes.
Models named `*_sdn` carry the Semantic Diffusion Network neck of Tan, Wu and Pi,
*Semantic Diffusion Network for Semantic Segmentation* (NeurIPS 2022).

## Use

```python
import sdnseg
from sdnseg.models import Segmentor

model = sdnseg.load_model("<this folder or repo>")  # a Predictor: .predict(image) -> (H, W) labels
net = Segmentor.from_pretrained("<this folder or repo>")  # the bare network: logits
```

`sdnseg predict --ckpt_path <this folder> --predict_path 'images/*.png'` labels image files.
Images are normalised with mean {{ mean }} and std {{ std }} (0..255 scale)
{%- if base_size %} and resized to fit {{ base_size }}{% endif %}; inference mode `{{ inference.mode }}`.

## Metrics

{% if metrics -%}
{{ metrics_source }}

| metric | value |
|---|---|
{% for name, value in metrics.items() -%}
| {{ name }} | {{ "%.4f"|format(value) }} |
{% endfor %}
{%- else -%}
No metrics were recorded with these weights.
{%- endif %}

## Classes

{% for name in classes %}{{ loop.index0 }} `{{ name }}`{% if not loop.last %}, {% endif %}{% endfor %}
"""


def _is_repo_id(name_or_path: str | os.PathLike) -> bool:
    """Whether a name that is no local folder is to be looked up on the Hub (``owner/name``):
    an existing file, or a path-like text (``./``, ``/``, ``~``, several ``/``), is not."""
    text = str(name_or_path)
    path_like = text.startswith((".", "/", "~")) or text.count("/") > 1
    return not (Path(text).exists() or path_like)


def hub_file(name_or_path: str | os.PathLike, filename: str, **download_kwargs: Any) -> Path:
    """``filename`` of a local folder, or downloaded from the Hub repository ``name_or_path``.

    Raises:
        FileNotFoundError: a local folder without the file, or a path that is no folder (a
            repository id has no path separators beyond ``owner/name``).
    """
    folder = Path(name_or_path)
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} is not a saved model folder")
        return path
    if not _is_repo_id(name_or_path):
        raise FileNotFoundError(f"{name_or_path} is not a folder (nor a Hub repository id)")
    return Path(hf_hub_download(repo_id=str(name_or_path), filename=filename, **download_kwargs))


def load_weights(
    model: nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> nn.Module:
    """Load a ``.safetensors`` file into ``model``, strictly.

    Raises:
        ValueError: an unreadable file, or tensors missing, unexpected or of another shape than
            the model's; the message names the file and the first keys at fault.
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as err:  # any unreadable file: say which and why
        raise ValueError(f"cannot read weights {path}: {err}") from None
    expected = model.state_dict()
    problems = []
    if missing := [key for key in expected if key not in state]:
        problems.append(f"missing {shown(missing)}")
    if unexpected := [key for key in state if key not in expected]:
        problems.append(f"unexpected {shown(unexpected)}")
    if wrong := [
        f"{key} {tuple(state[key].shape)} (model {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]:
        problems.append(f"of another shape: {shown(wrong)}")
    if problems:
        raise ValueError(
            f"{path}: the tensors do not fit the model its config describes: {'; '.join(problems)}"
        )
    model.load_state_dict(state)
    return model


def _check_metadata(config: Mapping[str, Any], source: str) -> None:
    """Raise a ValueError naming ``source`` and the key when the metadata cannot describe the model."""
    num_classes = config["num_classes"]
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{source}: 'num_classes' must be a positive integer, got {num_classes!r}")
    for key in ("classes", "palette"):
        value = config[key]
        if not isinstance(value, Sequence) or len(value) != num_classes:
            raise ValueError(
                f"{source}: {key!r} must list {num_classes} entries (num_classes), got {value!r:.80}"
            )
    for key in ("mean", "std"):
        if not isinstance(config[key], Sequence) or len(config[key]) != 3:
            raise ValueError(f"{source}: {key!r} must have 3 values (RGB), got {config[key]!r}")
    if not isinstance(config["overrides"], Mapping):
        raise ValueError(f"{source}: 'overrides' must be a mapping, got {config['overrides']!r}")
    inference = config["inference"]
    if not isinstance(inference, Mapping) or "mode" not in inference:
        raise ValueError(
            f"{source}: 'inference' must be a mapping with a 'mode', got {inference!r}"
        )


class SegmentorHubMixin(
    PyTorchModelHubMixin,
    library_name="sdnseg",
    license="apache-2.0",
    pipeline_tag="image-segmentation",
    tags=["semantic-segmentation", "sdnseg"],
    model_card_template=MODEL_CARD,
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for zoo segmentors (see the
    module docstring). Mixed into :class:`~sdnseg.models.Segmentor`.

    Attributes:
        hub_metadata: after ``from_pretrained``, the loaded ``config.json`` (classes, palette,
            normalisation, inference mode, metrics); the defaults of the next ``save_pretrained``.
    """

    hub_metadata: dict[str, Any] | None = None

    def hub_config(
        self,
        *,
        classes: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        base_size: Sequence[int] | None = None,
        ignore_index: int | None = None,
        inference: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> dict[str, Any]:
        """The ``config.json`` of this model: the arguments given, else ``hub_metadata``'s, else
        generic names, the default palette, ImageNet normalisation, whole-image inference.

        Raises:
            ValueError: a model not built by :func:`~sdnseg.models.create_model` (no zoo name to
                rebuild it from), or metadata that does not fit it (e.g. 5 names for 6 classes).
        """
        model_config = getattr(self, "config", None)
        if model_config is None:
            raise ValueError(
                f"save_pretrained needs a zoo model (sdnseg.create_model): this "
                f"{type(self).__name__} has no config to rebuild it from"
            )
        num_classes = self.num_classes
        given = {
            "classes": classes,
            "palette": palette,
            "mean": mean,
            "std": std,
            "base_size": base_size,
            "ignore_index": ignore_index,
            "inference": inference,
            "metrics": metrics,
        }
        previous = self.hub_metadata or {}
        # Through the package, as from_pretrained does: the zoo imports this module's users.
        from sdnseg.models import input_normalization

        mean_std = input_normalization(self.config) or (IMAGENET_MEAN, IMAGENET_STD)
        defaults = {
            "classes": [f"class{i}" for i in range(num_classes)],
            "palette": default_palette(num_classes),
            "mean": mean_std[0],
            "std": mean_std[1],
            "base_size": None,
            "ignore_index": 255,
            "inference": {"mode": "whole", "crop_size": None, "stride": None},
            "metrics": {},
        }
        chosen = {
            key: value if value is not None else previous.get(key, defaults[key])
            for key, value in given.items()
        }
        config = {
            "sdnseg_hub_format": HUB_FORMAT,
            "arch": model_config.name,
            "overrides": dict(model_config.overrides),
            "num_classes": num_classes,
            **chosen,
        }
        # Tuples become lists, as they come back from JSON, so that a reload compares equal.
        config = json.loads(json.dumps(config))
        config["metrics"] = {str(k): float(v) for k, v in config["metrics"].items()}
        _check_metadata(config, f"{type(self).__name__}.save_pretrained")
        return config

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        config: Mapping[str, Any] | None = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card_kwargs: Mapping[str, Any] | None = None,
        metrics_source: str | None = None,
        **metadata_and_push_kwargs: Any,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_directory``.

        Args:
            save_directory: the folder (created if needed).
            config: a full ``config.json`` (as ``push_to_hub`` passes it); None builds it with
                :meth:`hub_config` from the keyword arguments ``classes``, ``palette``,
                ``mean``, ``std``, ``base_size``, ``ignore_index``, ``inference``, ``metrics``.
            repo_id, push_to_hub: also upload the folder (the mixin's ``push_to_hub``; needs a
                network and a token).
            model_card_kwargs: extra variables of the model card template.
            metrics_source: one line the card puts above the metrics table (where they come from).

        Returns:
            The commit URL when pushed, else None.
        """
        names = ("classes", "palette", "mean", "std", "base_size", "ignore_index")
        metadata = {
            k: metadata_and_push_kwargs.pop(k)
            for k in (*names, "inference", "metrics")
            if k in metadata_and_push_kwargs
        }
        config = dict(config) if config is not None else self.hub_config(**metadata)
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self._save_pretrained(folder)
        with atomic_write(folder / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        card_kwargs = dict(model_card_kwargs or {})
        if metrics_source is not None:
            card_kwargs["metrics_source"] = metrics_source
        card = self.generate_model_card(config=config, **card_kwargs)
        with atomic_write(folder / CARD_NAME) as tmp:
            card.save(tmp)
        if push_to_hub:
            return self.push_to_hub(
                repo_id or folder.name,
                config=config,
                model_card_kwargs=card_kwargs,
                **metadata_and_push_kwargs,
            )
        if metadata_and_push_kwargs:
            raise TypeError(f"unexpected arguments {sorted(metadata_and_push_kwargs)}")
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_model

        with atomic_write(save_directory / WEIGHTS_NAME) as tmp:
            save_model(self, str(tmp))

    def generate_model_card(self, *args: Any, config: Mapping[str, Any] | None = None, **kwargs):
        """The README.md of a saved model (:data:`MODEL_CARD`), from its ``config.json``."""
        config = dict(config) if config is not None else self.hub_config()
        info = self._hub_mixin_info
        kwargs.setdefault("metrics_source", "Metrics recorded with these weights:")
        data = ModelCardData(**info.model_card_data.to_dict())
        data.tags = sorted({*(data.tags or []), config["arch"]})
        return ModelCard.from_template(
            card_data=data,
            template_str=info.model_card_template,
            **{**config, **kwargs},
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        config: dict[str, Any] | None = None,
        map_location: str | torch.device = "cpu",
        **model_kwargs: Any,
    ):
        """Rebuild the zoo model ``config.json`` names and load ``model.safetensors`` strictly."""
        # The zoo builds Segmentors, which carry this mixin: it is imported when a model is
        # loaded, through the package, not when this module is (no import-time cycle).
        from sdnseg.models import MODELS, build_model, get_config

        source = f"{model_id}/{CONFIG_NAME}"
        if config is None:
            raise FileNotFoundError(f"{source} not found: {model_id} is not a saved sdnseg model")
        if model_kwargs:
            raise TypeError(f"unexpected arguments {sorted(model_kwargs)}")
        missing = [key for key in CONFIG_KEYS if key not in config]
        if missing:
            raise ValueError(f"{source} lacks {missing}; it was not written by save_pretrained")
        if config["sdnseg_hub_format"] != HUB_FORMAT:
            raise ValueError(
                f"{source}: 'sdnseg_hub_format' is {config['sdnseg_hub_format']!r}; this sdnseg "
                f"reads {HUB_FORMAT}"
            )
        _check_metadata(config, source)
        if config["arch"] not in MODELS:
            raise ValueError(
                f"{source}: 'arch' names {config['arch']!r}, which is no zoo model; known: "
                f"{shown(list(MODELS), 20)}"
            )
        try:
            # The saved tensors replace any installed encoder weights: don't read those.
            zoo_config = get_config(config["arch"], **config["overrides"])
            model = build_model(zoo_config, config["num_classes"], load_weights=False)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: 'overrides' {config['overrides']!r}: {err}") from None
        download = {
            "revision": revision,
            "cache_dir": cache_dir,
            "force_download": force_download,
            "local_files_only": local_files_only,
            "token": token,
        }
        load_weights(model, hub_file(model_id, WEIGHTS_NAME, **download), map_location)
        model.hub_metadata = dict(config)
        return model.eval()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any):
        """A saved model from a local folder or a Hub repository id (the mixin's, see there);
        ``map_location`` places the weights. A path that is not a folder is an error, not a
        repository lookup."""
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir() and not _is_repo_id(pretrained_model_name_or_path):
            raise FileNotFoundError(f"{path} is not a folder (nor a Hub repository id)")
        if path.is_dir() and not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"{path / CONFIG_NAME} not found: {path} is not a saved sdnseg model"
            )
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
