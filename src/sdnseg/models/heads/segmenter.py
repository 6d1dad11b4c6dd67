"""Segmenter's mask transformer head (Strudel et al., ICCV 2021), as mmseg's
``SegmenterMaskTransformerHead``.

Learnable class embeddings are appended to the projected patch tokens, both pass through pre-norm
transformer layers (timm ``Block``: LayerNorm eps 1e-5, qkv bias, GELU MLP), and the logits are the
cosine similarities of patches and classes, LayerNorm-ed over the classes. Linear layers and class
embeddings start from trunc-normal(0.02), as in mmseg.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn


class SegmenterMaskHead(nn.Module):
    """Mask transformer decoder.

    Args:
        in_channels: channels of ``features[in_index]`` (768 for ViT-B).
        num_classes: output classes (one class embedding each).
        num_layers: transformer layers.
        num_heads: attention heads.
        embed_dims: token width.
        mlp_ratio: hidden width of the MLPs over ``embed_dims``.
        drop_path_rate: stochastic depth, linear from 0 to this value over the layers.
        dropout: dropout after attention and MLP projections.
        in_index: which feature of the list to read.

    Shape:
        a list of features; ``features[in_index]`` (N, in_channels, h, w) -> (N, num_classes, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_layers: int = 2,
        num_heads: int = 12,
        embed_dims: int = 768,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
        dropout: float = 0.0,
        in_index: int = -1,
    ) -> None:
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f"embed_dims={embed_dims} is not divisible by num_heads={num_heads}")
        self.num_classes = num_classes
        self.in_index = in_index
        self.dec_proj = nn.Linear(in_channels, embed_dims)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, embed_dims))
        rates = torch.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.ModuleList(
            Block(
                embed_dims,
                num_heads,
                mlp_ratio,
                qkv_bias=True,
                proj_drop=dropout,
                drop_path=rate,
                norm_layer=nn.LayerNorm,
            )
            for rate in rates
        )
        self.decoder_norm = nn.LayerNorm(embed_dims)
        self.patch_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.classes_proj = nn.Linear(embed_dims, embed_dims, bias=False)
        self.mask_norm = nn.LayerNorm(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        trunc_normal_(self.cls_emb, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.in_index]
        n, _, h, w = x.shape
        x = self.dec_proj(x.flatten(2).transpose(1, 2))
        x = torch.cat([x, self.cls_emb.expand(n, -1, -1)], dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.decoder_norm(x)
        patches = F.normalize(self.patch_proj(x[:, : -self.num_classes]), dim=2)
        classes = F.normalize(self.classes_proj(x[:, -self.num_classes :]), dim=2)
        masks = self.mask_norm(patches @ classes.transpose(1, 2))
        return masks.transpose(1, 2).reshape(n, self.num_classes, h, w)
