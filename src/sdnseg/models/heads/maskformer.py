"""MaskFormer's mask-classification head (Cheng, Schwing and Kirillov, *Per-Pixel Classification
is Not All You Need for Semantic Segmentation*, NeurIPS 2021), as its ``MaskFormerHead`` with the
``BasePixelDecoder`` and ``TransformerPredictor`` of the semantic-segmentation configs.

1. Per-pixel embeddings ``E_pixel`` (``mask_dim``, stride 4): the FPN of
   :class:`~sdnseg.models.heads.pixel_decoder.PixelDecoder` over all backbone levels.
2. A DETR transformer decoder (no encoder, MaskFormer's ``ENC_LAYERS: 0``): ``num_queries`` (100)
   learned positional queries, the targets starting at zero, ``num_layers`` (6) post-norm layers
   of self-attention, cross-attention to the coarsest backbone feature (stride 32, projected to
   ``hidden_dim`` by a 1×1 conv) and a ReLU FFN, ``num_heads`` (8), ``dim_feedforward`` (2048),
   dropout 0.1. Queries get their positional embedding added to the attention's queries and keys,
   the memory DETR's sine encoding (:func:`sine_position_encoding`) added to its keys. One shared
   LayerNorm follows every layer's output (DETR's ``return_intermediate``).
3. For each layer's output: class logits ``Linear(hidden_dim, C + 1)`` (the last is "no
   object") and mask logits ``einsum(MLP(q), E_pixel)``, the MLP 3 layers wide ``hidden_dim``
   ending at ``mask_dim``: every layer is supervised (deep supervision).

The Segmentor contract (logits whose softmax is the class posterior): MaskFormer's semantic
inference is ``S = einsum("qc,qhw->chw", softmax(class_logits)[..., :-1], sigmoid(mask_logits))``
(:func:`semantic_inference`) of the last layer. The head returns ``log S`` at the mask
resolution, so ``argmax`` of the logits is ``argmax`` of ``S`` and their softmax is ``S``
normalised over the classes; the Segmentor resizes the ``C`` maps of ``log S`` bilinearly to the
input size (not the 100 masks: cheaper; interpolating ``log S`` rather than ``S`` can move an
argmax by at most a sub-pixel at class borders). ``S`` is clamped at ``eps`` (1e-8) first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sdnseg.models.heads.pixel_decoder import PixelDecoder

__all__ = [
    "MaskFormerDecoderLayer",
    "MaskFormerHead",
    "semantic_inference",
    "sine_position_encoding",
]


def sine_position_encoding(x: torch.Tensor, num_feats: int, temperature: float = 10000.0):
    """DETR's sine encoding of the pixel positions of ``x`` (every pixel valid).

    Row and column indices ``1..H`` / ``1..W`` are scaled to ``(0, 2π]``; each gives
    ``num_feats`` channels ``sin, cos, sin, ...`` of ``pos / temperature^(2⌊i/2⌋ / num_feats)``;
    rows first. Written with ``cumsum`` over ones so that an ONNX trace keeps H and W dynamic.

    Shape:
        x (N, C, H, W) -> (2 · num_feats, H, W)
    """
    ones = torch.ones_like(x[0, 0])
    y_embed, x_embed = ones.cumsum(0), ones.cumsum(1)
    y_embed = y_embed / (y_embed[-1:, :] + 1e-6) * (2 * math.pi)
    x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * (2 * math.pi)
    dim_t = torch.arange(num_feats, dtype=x.dtype, device=x.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)

    def encode(pos: torch.Tensor) -> torch.Tensor:
        pos = pos[..., None] / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)

    return torch.cat((encode(y_embed), encode(x_embed)), dim=-1).permute(2, 0, 1)


def semantic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """MaskFormer's semantic scores ``Σ_q softmax(class)_qc · sigmoid(mask)_q`` ("no object"
    dropped).

    Shape:
        class_logits (N, Q, C + 1), mask_logits (N, Q, h, w) -> (N, C, h, w)
    """
    probs = class_logits.softmax(dim=-1)[..., :-1]
    return torch.einsum("nqc,nqhw->nchw", probs, mask_logits.sigmoid())


class MaskFormerDecoderLayer(nn.Module):
    """DETR's post-norm decoder layer with positional embeddings on queries and keys.

    Shape:
        queries, query_pos (N, Q, D); memory, memory_pos (N or 1, HW, D) -> (N, Q, D)
    """

    def __init__(
        self, d_model: int, num_heads: int, dim_feedforward: int = 2048, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(3))

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
    ) -> torch.Tensor:
        q = queries + query_pos
        update = self.self_attn(q, q, queries, need_weights=False)[0]
        queries = self.norms[0](queries + self.dropouts[0](update))
        keys = memory + memory_pos
        update = self.cross_attn(queries + query_pos, keys, memory, need_weights=False)[0]
        queries = self.norms[1](queries + self.dropouts[1](update))
        return self.norms[2](queries + self.dropouts[2](self.ffn(queries)))


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> nn.Sequential:
    dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(c_in, c_out))
        if i < num_layers - 1:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MaskFormerHead(nn.Module):
    """Pixel decoder + transformer decoder + class and mask predictions (see the module doc).

    ``returns_masks`` tells :class:`~sdnseg.models.Segmentor` to call ``forward(features,
    with_masks)`` and to pass the per-layer predictions on as ``aux["class_logits"]`` and
    ``aux["mask_logits"]`` of ``forward_train``, for
    :class:`~sdnseg.models.losses.MaskFormerLoss`.

    Args:
        in_channels: channels of the backbone levels, finest first; the transformer reads the last.
        num_classes: classes ``C`` (the class head predicts ``C + 1``).
        conv_dim, mask_dim: widths of the pixel decoder's FPN and of the embeddings (256, 256).
        hidden_dim: the transformer's width (256).
        num_queries, num_layers, num_heads, dim_feedforward, dropout: of the transformer decoder
            (100, 6, 8, 2048, 0.1).
        norm_groups: of the pixel decoder's GroupNorm (32).
        eps: floor of the semantic scores before the log.

    Shape:
        a list of features, the first (N, C_0, h, w) -> log-scores (N, C, h, w) and, with
        ``with_masks``, ``{"class_logits": (L, N, Q, C + 1), "mask_logits": (L, N, Q, h, w)}``
        of the L decoder layers, the last layer last (without: an empty dict)
    """

    returns_masks = True

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        conv_dim: int = 256,
        mask_dim: int = 256,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_layers: int = 6,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        norm_groups: int = 32,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        if hidden_dim % 2 or hidden_dim % num_heads:
            raise ValueError(
                f"hidden_dim {hidden_dim} must be even and a multiple of num_heads {num_heads}"
            )
        if min(num_queries, num_layers) < 1:
            raise ValueError(
                f"num_queries and num_layers must be positive, got {num_queries}, {num_layers}"
            )
        self.num_classes = num_classes
        self.eps = eps
        self.pixel_decoder = PixelDecoder(in_channels, conv_dim, mask_dim, norm_groups)
        self.layers = nn.ModuleList(
            MaskFormerDecoderLayer(hidden_dim, num_heads, dim_feedforward, dropout)
            for _ in range(num_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        # DETR's Transformer._reset_parameters: Xavier on every matrix of the decoder.
        for param in self.layers.parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.input_proj = nn.Conv2d(in_channels[-1], hidden_dim, 1)
        nn.init.kaiming_uniform_(self.input_proj.weight, a=1)  # detectron2's c2_xavier_fill
        nn.init.zeros_(self.input_proj.bias)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = _mlp(hidden_dim, hidden_dim, mask_dim, 3)

    def forward(
        self, features: list[torch.Tensor], with_masks: bool = True
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pixel_embed = self.pixel_decoder(features)
        memory = self.input_proj(features[-1])
        memory_pos = sine_position_encoding(memory, memory.shape[1] // 2).flatten(1).T[None]
        memory = memory.flatten(2).transpose(1, 2)  # (N, HW, D)
        # A copy, not an expanded view: a view of a parameter made under no_grad claims to need
        # grad without a grad_fn, which module hooks (FlopCounterMode's tracker) reject.
        query_pos = self.query_embed.weight[None].repeat(memory.shape[0], 1, 1)
        queries = torch.zeros_like(query_pos)
        outputs = []
        for layer in self.layers:
            queries = layer(queries, query_pos, memory, memory_pos)
            outputs.append(self.decoder_norm(queries))
        if not with_masks:  # inference: the last layer only
            mask_logits = torch.einsum("nqd,ndhw->nqhw", self.mask_embed(outputs[-1]), pixel_embed)
            scores = semantic_inference(self.class_embed(outputs[-1]), mask_logits)
            return scores.clamp_min(self.eps).log(), {}
        hidden = torch.stack(outputs)  # (L, N, Q, D)
        class_logits = self.class_embed(hidden)
        mask_logits = torch.einsum("lnqd,ndhw->lnqhw", self.mask_embed(hidden), pixel_embed)
        scores = semantic_inference(class_logits[-1], mask_logits[-1])
        masks = {"class_logits": class_logits, "mask_logits": mask_logits}
        return scores.clamp_min(self.eps).log(), masks
