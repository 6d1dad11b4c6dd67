"""The InverseForm term (Borse et al., CVPR 2021, Sec. 3): the distance between the predicted and
the ground-truth edge maps measured by a frozen inverse-transformation network.

Both maps (the edge head's sigmoid and :func:`~sdnseg.models.losses.edge.edge_targets`, zero on
ignored pixels) are resized to a grid of ``size × size`` tiles (:func:`~sdnseg.models.inverseform.
tiles`); each pair of tiles goes through the network, and the loss is the mean over tiles of the
distance of the predicted transform to the identity (:func:`~sdnseg.models.inverseform.
transform_distance`). The network comes from a checkpoint of ``sdnseg train_inverseform``; it is
kept out of the module's state (segmentation checkpoints do not carry its ~100M parameters) and
moved to the input's device on use. Gradients reach the edge head through the sigmoid (the public
code's single-channel ``log_softmax`` gave none).

Calibration (``calibrate=True``, a choice of sdnseg): a trained network does not read exactly the
identity from two identical maps, so the distance measured is that between the transform it reads
from (prediction, ground truth) and the one it reads from (ground truth, ground truth): exactly 0
for a perfect prediction, and the same gradient (the second reading does not depend on the
prediction). ``calibrate=False`` is the public code's ``‖A(θ) − I‖``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sdnseg.models.inverseform import (
    InverseTransformNet,
    load_inverse_net,
    similarity_matrix,
    tiles,
)
from sdnseg.models.losses._common import logits_at_target
from sdnseg.models.losses.edge import EDGE, edge_logits, edge_targets
from sdnseg.models.segmentor import SegmentorOutput


def inverse_form_distance(
    net: InverseTransformNet, predicted: torch.Tensor, target: torch.Tensor, calibrate: bool = True
) -> torch.Tensor:
    """Mean InverseForm distance of two edge maps in [0, 1] over their tiles (see the module doc
    for ``calibrate``): (N, 1, H, W) each -> scalar."""
    a, b = tiles(predicted, net.size), tiles(target, net.size)
    theta = net(a, b)
    reference = net(b, b) if calibrate else torch.zeros_like(theta)  # θ = 0: the identity
    return (similarity_matrix(theta) - similarity_matrix(reference)).flatten(1).norm(dim=1).mean()


class InverseFormLoss(nn.Module):
    """InverseForm distance between the edge head's map and the ground-truth edges.

    Args:
        checkpoint: the inverse network (``sdnseg train_inverseform --output``), or a network.
        radius: of the ground-truth edges.
        calibrate: measure against the network's reading of two identical maps (module doc).
        ignore_index: the label to ignore.

    Raises:
        FileNotFoundError / ValueError: ``checkpoint`` is missing or of another kind (named).

    Shape:
        outputs.aux["edge"] (N, 1, H', W'), target (N, H, W) -> scalar
    """

    aux_keys = (EDGE,)

    def __init__(
        self,
        checkpoint: str | Path | InverseTransformNet,
        radius: int = 2,
        calibrate: bool = True,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        net = checkpoint if isinstance(checkpoint, nn.Module) else load_inverse_net(checkpoint)
        net.requires_grad_(False).eval()
        self._net = [net]  # a list keeps it out of state_dict(), parameters() and train()
        self.checkpoint = None if isinstance(checkpoint, nn.Module) else str(checkpoint)
        self.radius, self.calibrate, self.ignore_index = radius, calibrate, ignore_index

    @property
    def net(self) -> InverseTransformNet:
        return self._net[0]

    def forward(self, outputs: SegmentorOutput, target: torch.Tensor) -> torch.Tensor:
        logits = logits_at_target(edge_logits(outputs, type(self).__name__), target, "edge")
        edges, valid = edge_targets(target, self.radius, self.ignore_index)
        net = self.net.to(device=logits.device, dtype=logits.dtype)
        predicted = logits.sigmoid() * valid
        return inverse_form_distance(net, predicted, edges.to(logits), self.calibrate)
