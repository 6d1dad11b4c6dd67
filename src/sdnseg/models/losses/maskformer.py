"""MaskFormer's set-prediction loss (Cheng et al., NeurIPS 2021, Sec. 3.1 and 4): bipartite
matching of the predicted (class, mask) pairs to the ground-truth segments, then
``L = L_cls + λ_focal · L_focal + λ_dice · L_dice`` on the matched pairs, for every decoder layer.

Targets: one binary mask per class present in each image's label map (semantic segmentation has
one segment per class). Everything is compared at the resolution of the mask logits (stride 4):
the label map is *downsampled* to it by nearest-exact sampling (the label at the centre of each
cell) before the masks are made; upsampling 100 masks of 6 layers to the input size would cost
far more. A class whose pixels vanish in that sampling has no target.

Ignored pixels (``ignore_index``) belong to no mask and are left out of both mask terms and of
their matching costs: the focal loss averages over the labelled pixels only and the Dice sums
run over them only (MaskFormer's own targets leave ignored pixels negative in every mask; here
they count nowhere, as the pixel losses of :mod:`sdnseg.models.losses` treat them).

Matching (MaskFormer's ``HungarianMatcher``), per image and per layer, with
:func:`scipy.optimize.linear_sum_assignment` on ``1 · (−p(class)) + 20 · focal + 1 · dice``
(:func:`match`). Loss terms (``SetCriterion``): cross-entropy over the ``C + 1`` classes of all
queries, the unmatched ones labelled "no object" and weighted ``no_object_weight`` (0.1);
the sigmoid focal loss (α 0.25, γ 2, averaged over pixels) and the Dice loss
``1 − (2 Σ p t + 1) / (Σ p + Σ t + 1)`` of the matched masks, both summed and divided by the
number of target masks in the batch (at least 1; not averaged across processes as MaskFormer's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from sdnseg.models.segmentor import SegmentorOutput

__all__ = [
    "MaskFormerLoss",
    "dice_loss",
    "mask_targets",
    "match",
    "pairwise_mask_costs",
    "sigmoid_focal_loss",
]

MaskTarget = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor
]  # labels (K,), masks (K, P), valid (P,)


def mask_targets(
    target: torch.Tensor, num_classes: int, ignore_index: int, size: tuple[int, int]
) -> list[MaskTarget]:
    """Per image: the classes present, their binary masks and the labelled pixels, at ``size``.

    Raises:
        ValueError: a label outside ``[0, num_classes)`` other than ``ignore_index``.

    Shape:
        target (N, H, W) -> N × (labels (K,), masks (K, h·w) float, valid (h·w,) float)
    """
    if target.dim() != 3:
        raise ValueError(f"MaskFormerLoss expects target (N, H, W), got {tuple(target.shape)}")
    sampled = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest-exact")
    sampled = sampled[:, 0].long().flatten(1)
    valid = sampled != ignore_index
    bad = valid & ((sampled < 0) | (sampled >= num_classes))
    if bad.any():
        raise ValueError(
            f"MaskFormerLoss: target holds label {int(sampled[bad][0])}, outside [0, "
            f"{num_classes}) and not ignore_index {ignore_index}"
        )
    out = []
    for labels_map, labelled in zip(sampled, valid, strict=True):
        labels = labels_map[labelled].unique()
        masks = (labels_map[None] == labels[:, None]).float()
        out.append((labels, masks, labelled.float()))
    return out


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Focal loss ``−α_t (1 − p_t)^γ log p_t`` of each mask, averaged over the valid pixels.

    Shape:
        logits, targets (K, P), valid (P,) -> (K,)
    """
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    prob = logits.sigmoid()
    p_t = prob * targets + (1 - prob) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * (1 - p_t).pow(gamma) * ce
    return (loss * valid).sum(-1) / valid.sum().clamp(min=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``1 − (2 Σ p t + 1) / (Σ p + Σ t + 1)`` of each mask, sums over the valid pixels.

    Shape:
        logits, targets (K, P), valid (P,) -> (K,)
    """
    prob, targets = logits.sigmoid() * valid, targets * valid
    numerator = 2 * (prob * targets).sum(-1)
    return 1 - (numerator + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def pairwise_mask_costs(
    logits: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sigmoid_focal_loss` and :func:`dice_loss` of every prediction against every target.

    Shape:
        logits (Q, P), targets (K, P), valid (P,) -> focal (Q, K), dice (Q, K)
    """
    prob = logits.sigmoid()
    positive = alpha * (1 - prob).pow(gamma) * F.softplus(-logits) * valid  # −log p
    negative = (1 - alpha) * prob.pow(gamma) * F.softplus(logits) * valid  # −log(1 − p)
    focal = (positive @ targets.T + negative @ (1 - targets).T) / valid.sum().clamp(min=1)
    prob, targets = prob * valid, targets * valid
    numerator = 2 * prob @ targets.T
    denominator = prob.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return focal, 1 - (numerator + 1) / (denominator + 1)


@torch.no_grad()
def match(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    target: MaskTarget,
    class_weight: float = 1.0,
    mask_weight: float = 20.0,
    dice_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hungarian matching of one image's queries to its target masks (MaskFormer's matcher).

    Returns:
        ``(query_indices, target_indices)``, int64, ``min(Q, K)`` long, by increasing query.

    Shape:
        class_logits (Q, C + 1), mask_logits (Q, P), target as :func:`mask_targets`'s
    """
    labels, masks, valid = target
    if labels.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=class_logits.device)
        return empty, empty
    class_cost = -class_logits.float().softmax(-1)[:, labels]
    focal, dice = pairwise_mask_costs(mask_logits.float(), masks, valid)
    cost = class_weight * class_cost + mask_weight * focal + dice_weight * dice
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    device = class_logits.device
    return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)


class MaskFormerLoss(nn.Module):
    """MaskFormer's matching loss of every decoder layer (see the module doc).

    Args:
        no_object_weight: weight of the "no object" class in the cross-entropy (0.1).
        class_weight, mask_weight, dice_weight: of the three terms, also the matching costs'
            (1, 20, 1).
        alpha, gamma: of the focal loss (0.25, 2).
        deep_supervision: the loss of every decoder layer (True) or of the last only.
        ignore_index: the label to ignore.

    Shape:
        outputs: :class:`~sdnseg.models.SegmentorOutput` with ``aux["class_logits"]``
        (L, N, Q, C + 1) and ``aux["mask_logits"]`` (L, N, Q, h, w); target (N, H, W) -> scalar
    """

    def __init__(
        self,
        no_object_weight: float = 0.1,
        class_weight: float = 1.0,
        mask_weight: float = 20.0,
        dice_weight: float = 1.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
        deep_supervision: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        if not 0 <= no_object_weight <= 1:
            raise ValueError(f"no_object_weight must be in [0, 1], got {no_object_weight}")
        self.no_object_weight = no_object_weight
        self.class_weight, self.mask_weight, self.dice_weight = (
            class_weight,
            mask_weight,
            dice_weight,
        )
        self.alpha, self.gamma = alpha, gamma
        self.deep_supervision = deep_supervision
        self.ignore_index = ignore_index

    def _predictions(self, outputs: SegmentorOutput) -> tuple[torch.Tensor, torch.Tensor]:
        aux = getattr(outputs, "aux", None)
        if not isinstance(aux, dict) or not {"class_logits", "mask_logits"} <= set(aux):
            raise ValueError(
                "MaskFormerLoss expects a SegmentorOutput with aux['class_logits'] and "
                "aux['mask_logits'] (forward_train of a MaskFormer, e.g. "
                f"create_model('maskformer_efflite0', ...)), got {type(outputs).__name__}"
                + (f" with aux {sorted(aux)}" if isinstance(aux, dict) else "")
            )
        class_logits, mask_logits = aux["class_logits"], aux["mask_logits"]
        if class_logits.dim() != 4 or mask_logits.dim() != 5:
            raise ValueError(
                f"MaskFormerLoss expects class_logits (L, N, Q, C + 1) and mask_logits "
                f"(L, N, Q, h, w), got {tuple(class_logits.shape)} and {tuple(mask_logits.shape)}"
            )
        return class_logits, mask_logits

    def layer_terms(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[MaskTarget]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted (cross-entropy, focal, Dice) of one layer's (N, Q, C + 1), (N, Q, h, w)."""
        num_classes = class_logits.shape[-1] - 1
        num_masks = max(sum(int(t[0].numel()) for t in targets), 1)
        classes = torch.full(class_logits.shape[:2], num_classes, device=class_logits.device)
        focal = dice = mask_logits.sum() * 0
        flat = mask_logits.flatten(2)
        for i, target in enumerate(targets):
            queries, matched = match(
                class_logits[i],
                flat[i],
                target,
                self.class_weight,
                self.mask_weight,
                self.dice_weight,
            )
            labels, masks, valid = target
            classes[i, queries] = labels[matched]
            if queries.numel():
                logits, truth = flat[i, queries], masks[matched].to(flat.dtype)
                valid = valid.to(flat.dtype)
                focal = (
                    focal + sigmoid_focal_loss(logits, truth, valid, self.alpha, self.gamma).sum()
                )
                dice = dice + dice_loss(logits, truth, valid).sum()
        weight = class_logits.new_ones(num_classes + 1)
        weight[-1] = self.no_object_weight
        ce = F.cross_entropy(class_logits.transpose(1, 2), classes, weight=weight)
        return ce, focal / num_masks, dice / num_masks

    def terms(
        self, outputs: SegmentorOutput, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted (cross-entropy, focal, Dice), each summed over the supervised layers."""
        class_logits, mask_logits = self._predictions(outputs)
        if target.dim() != 3 or target.shape[0] != class_logits.shape[1]:
            raise ValueError(
                f"MaskFormerLoss expects target (N, H, W) with N = {class_logits.shape[1]}, got "
                f"{tuple(target.shape)}"
            )
        num_classes = class_logits.shape[-1] - 1
        targets = mask_targets(target, num_classes, self.ignore_index, mask_logits.shape[-2:])
        layers = range(class_logits.shape[0]) if self.deep_supervision else [-1]
        per_layer = [self.layer_terms(class_logits[k], mask_logits[k], targets) for k in layers]
        ce, focal, dice = (torch.stack(t).sum() for t in zip(*per_layer, strict=True))
        return ce, focal, dice

    def forward(self, outputs: SegmentorOutput, target: torch.Tensor) -> torch.Tensor:
        ce, focal, dice = self.terms(outputs, target)
        return self.class_weight * ce + self.mask_weight * focal + self.dice_weight * dice
