"""Packed-word fast path of the boundary counts behind the boundary F-score (private).

Definition: DAVIS / GSCNN / SegFix ``db_eval_boundary`` (see ``docs/metrics.md``).

* No per-class mask is built. Each pixel holds a word with bit ``c`` set for its class ``c``; void,
  and classes outside the current chunk of classes, set a sentinel bit cleared afterwards.
  ``seg2bmap`` is XORs and ORs of shifted copies, so on the packed words it yields every class's
  boundary map at once, bit by bit.
* A boundary bit of class ``c`` at pixel p is matched when the other map has bit ``c`` set within
  the disk around p. Boundary pixels are sparse (a few percent), so rather than dilating whole
  maps we gather the other map's words at each disk offset of each boundary pixel and OR them.
  The disk is ``dy^2 + dx^2 <= r^2``, exactly ``skimage.morphology.disk(r)``; disks are nested,
  so all tolerances come from one pass over the offsets, nearest first, and bits matched early
  leave the working set.
* Predictions and targets run through one pipeline as one stack of 2N maps.
"""

from __future__ import annotations

import math

import torch


def bmap_into(x: torch.Tensor, out: torch.Tensor) -> None:
    """BSDS ``seg2bmap`` over the last two dims of ``x`` (bool or packed words) into zeroed ``out``.

    A pixel is marked with ``x ^ neighbour`` for its right, lower and lower-right neighbours.
    """
    # Writing each term only where its neighbour exists gives the spec's last-row (horizontal
    # only) and last-column (vertical only) rules and leaves the bottom-right pixel zero.
    torch.bitwise_xor(x[..., :, :-1], x[..., :, 1:], out=out[..., :, :-1])
    out[..., :-1, :] |= x[..., :-1, :] ^ x[..., 1:, :]
    out[..., :-1, :-1] |= x[..., :-1, :-1] ^ x[..., 1:, 1:]


def _disk_shells(radius: float, row_stride: int) -> list[tuple[int, list[int]]]:
    # Offsets of the closed disk dy^2 + dx^2 <= radius^2 as flat shifts in a map with the given
    # row stride, grouped by squared distance, nearest first: smaller disks are prefixes.
    r = int(math.floor(radius))
    shells: dict[int, list[int]] = {}
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            d2 = dy * dy + dx * dx
            if d2 <= radius * radius:
                shells.setdefault(d2, []).append(dy * row_stride + dx)
    return sorted(shells.items())


def _class_words(
    labels: torch.Tensor, void: torch.Tensor | None, first: int, size: int, whole: bool
) -> torch.Tensor:
    # Bit (label - first) for the labels of this chunk of `size` classes; void, and classes of
    # other chunks, get the sentinel bit `size`, i.e. they are background for every class here.
    # With `whole` the chunk holds all classes (labels are checked to be in range) and `labels`,
    # a scratch buffer of the word dtype, is overwritten to save two passes over the maps.
    if whole:
        rel = labels if void is None else labels.masked_fill_(void, size)
        one = torch.ones((), dtype=labels.dtype, device=labels.device)
        return torch.bitwise_left_shift(one, rel, out=rel)
    rel = labels - first
    outside = (rel < 0) | (rel >= size)
    if void is not None:
        outside |= void
    return torch.bitwise_left_shift(1, rel.masked_fill_(outside, size))


def _piece_bits(num_bits: int) -> int:
    # Equal pieces of at most 16 bits: at worst a 2**16-bin histogram per image.
    pieces = -(-num_bits // 16)
    return -(-num_bits // pieces)


def _bit_counts(
    words: torch.Tensor, base: torch.Tensor, num_images: int, num_bits: int
) -> torch.Tensor:
    # (N, num_bits) int64: set bits per image and bit position among the sparse `words`, whose
    # image index comes pre-shifted in `base` (image << _piece_bits). One bincount per piece of
    # the word and a product with a bit table avoid expanding every word into num_bits bits.
    counts = torch.zeros(num_images, num_bits, dtype=torch.int64, device=words.device)
    if words.numel() == 0:
        return counts
    width = _piece_bits(num_bits)
    values = torch.arange(1 << width, device=words.device).unsqueeze(1)
    table = ((values >> torch.arange(width, device=words.device)) & 1).double()
    for first in range(0, num_bits, width):
        bits = min(width, num_bits - first)
        piece = words >> first if first else words
        if first + width < num_bits:
            piece = piece & ((1 << width) - 1)
        piece = piece | base
        hist = torch.bincount(piece, minlength=num_images << width)
        part = hist.view(num_images, 1 << width).double() @ table[:, :bits]
        counts[:, first : first + bits] = part.round().to(torch.int64)
    return counts


def _unmatched_counts(
    index: torch.Tensor,
    words: torch.Tensor,
    base: torch.Tensor,
    other: torch.Tensor,
    origin: int,
    shells: list[tuple[int, list[int]]],
    radii: list[float],
    num_images: int,
    num_bits: int,
) -> list[torch.Tensor]:
    # For each radius (ascending), the (N, num_bits) counts of the boundary bits in `words` with
    # no bit of the same class near the partner pixel in the other map: within the radius of
    # `index` in the flat framed maps `other`. The disk grows one distance shell at a time;
    # matched bits are cleared and pixels left without an unmatched bit are dropped, so the outer
    # shells only visit the few hard pixels. `index` holds the partner's flat position minus
    # `origin` (minus the most negative shift), so that each shifted gather is a narrow view plus
    # one index_select, with no index arithmetic.
    out: list[torch.Tensor] = []
    pending = [r * r for r in radii]
    for d2, shifts in shells:
        while pending and d2 > pending[0]:
            out.append(_bit_counts(words, base, num_images, num_bits))
            pending.pop(0)
        if words.numel() == 0:
            break
        near = None
        for shift in shifts:
            view = other.narrow(0, origin + shift, other.numel() - origin - shift)
            hit = view.index_select(0, index)
            near = hit if near is None else near.bitwise_or_(hit)
        words = words & near.bitwise_not_()
        # Compacting costs about as much as one gather; worth it once a tenth has gone.
        if 10 * int(torch.count_nonzero(words)) < 9 * words.numel():
            keep = words.nonzero().squeeze(1)
            words, index = words.index_select(0, keep), index.index_select(0, keep)
            base = base.index_select(0, keep)
    while pending:
        out.append(_bit_counts(words, base, num_images, num_bits))
        pending.pop(0)
    return out


# Images are scored in groups of about this many pixels: large enough that per-op overhead does
# not matter for small images, small enough to bound memory (and stay cache-friendly) for large.
GROUP_PIXELS = 1 << 21


def boundary_counts(
    preds: torch.Tensor,
    target: torch.Tensor,
    void: torch.Tensor | None,
    num_classes: int,
    radii: list[float],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``sdnseg.metrics.functional.boundary_counts`` on checked inputs.

    ``preds``, ``target``: (N, H, W) class ids in ``[0, C)`` except at ``void`` (N, H, W) bool
    (None: no void pixel); ``radii`` >= 1. Returns ``(n_pred, n_target, matched_pred,
    matched_target)`` int64 of shapes (N, C), (N, C), (T, N, C), (T, N, C).
    """
    n, h, w = target.shape
    c, t_count = num_classes, len(radii)
    dev = target.device
    n_pred = torch.zeros(n, c, dtype=torch.int64, device=dev)
    n_target = torch.zeros_like(n_pred)
    matched_pred = torch.zeros(t_count, n, c, dtype=torch.int64, device=dev)
    matched_target = torch.zeros_like(matched_pred)
    if target.numel() == 0 or t_count == 0:
        return n_pred, n_target, matched_pred, matched_target

    order = sorted(range(t_count), key=lambda k: radii[k])
    sorted_radii = [float(radii[k]) for k in order]
    pad = int(math.floor(sorted_radii[-1]))
    hp, wp = h + 2 * pad, w + 2 * pad
    shells = _disk_shells(sorted_radii[-1], wp)
    origin = pad * wp + pad  # minus the most negative shift; every interior index is >= it
    # 30 (62) classes and one sentinel bit per int32 (int64) word; the sign bit stays unused.
    dtype, chunk = (torch.int32, 30) if c <= 30 else (torch.int64, 62)
    group = max(1, GROUP_PIXELS // max(1, h * w))
    for i0 in range(0, n, group):
        i1 = min(n, i0 + group)
        g = i1 - i0
        # Both maps go through one pipeline: images 0..g-1 are predictions, g..2g-1 targets, and
        # a pixel's partner (the same pixel in the other map) lies g framed images away.
        labels = torch.empty(2 * g, h, w, dtype=dtype, device=dev)
        labels[:g] = preds[i0:i1]
        labels[g:] = target[i0:i1]
        void_g = None if void is None else void[i0:i1].repeat(2, 1, 1)
        for first in range(0, c, chunk):
            size = min(chunk, c - first)
            whole = size == c
            words = _class_words(labels, void_g, first, size, whole)
            # Boundary words inside a zero frame of width `pad`, so that every disk offset of a
            # pixel stays inside its own image's framed block.
            framed = words.new_zeros(2 * g, hp, wp)
            bmap_into(words, framed[:, pad : pad + h, pad : pad + w])
            flat = framed.view(-1)
            index = flat.nonzero().squeeze(1)
            # Every nonzero word has a class bit (two sentinel pixels XOR to zero), so the
            # sentinel can be cleared on the sparse values instead of on the dense map.
            values = flat.index_select(0, index) & ((1 << size) - 1)
            # `index` is sorted, so image ids come from 2g cut points instead of a division.
            ends = torch.arange(1, 2 * g + 1, device=dev) * (hp * wp)
            sizes = torch.diff(torch.searchsorted(index, ends), prepend=ends.new_zeros(1))
            image = torch.repeat_interleave(torch.arange(2 * g, device=dev), sizes)
            half = g * hp * wp
            partner = torch.where(image < g, index + (half - origin), index - (half + origin))
            base = image.to(dtype) << _piece_bits(size)
            total = _bit_counts(values, base, 2 * g, size)
            misses = _unmatched_counts(
                partner, values, base, flat, origin, shells, sorted_radii, 2 * g, size
            )
            cls = slice(first, first + size)
            n_pred[i0:i1, cls], n_target[i0:i1, cls] = total[:g], total[g:]
            for k, miss in zip(order, misses, strict=True):
                hit = total - miss
                matched_pred[k, i0:i1, cls], matched_target[k, i0:i1, cls] = hit[:g], hit[g:]
    return n_pred, n_target, matched_pred, matched_target
