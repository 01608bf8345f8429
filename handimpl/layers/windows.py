"""Sliding windows over the spatial axes of (m, C, H, W), and their adjoint: the im2col and
col2im that convolution and pooling are written with.

A window of kernel (kh, kw), stride (sh, sw) and dilation (dh, dw) at output position (a, b)
reads x[..., a·sh + i·dh, b·sw + j·dw] for i < kh, j < kw; there are

    Ho = ⌊(H − dh(kh − 1) − 1)/sh⌋ + 1,  Wo = ⌊(W − dw(kw − 1) − 1)/sw⌋ + 1

of them along each axis (padding is the caller's: it pads first)."""
from __future__ import annotations

import numpy as np

Array = np.ndarray
Pair = tuple[int, int]


def pair(v: int | tuple[int, int]) -> Pair:
    """An int or a pair as a pair: 3 -> (3, 3)."""
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def out_size(size: int, k: int, s: int, d: int = 1) -> int:
    """Windows along one axis of ``size`` (already padded); 0 or less where none fits."""
    return (size - d * (k - 1) - 1) // s + 1


def pad(x: Array, p: Pair) -> Array:
    """x with p zeros on both sides of each spatial axis: (m, C, H + 2ph, W + 2pw)."""
    return np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))


def windows(x: Array, k: Pair, s: Pair, d: Pair) -> Array:
    """im2col: (m, C, H, W) -> (m, C, kh, kw, Ho, Wo), cols[n, c, i, j, a, b] = x[n, c, a·sh + i·dh, b·sw + j·dw]."""
    Ho, Wo = out_size(x.shape[2], k[0], s[0], d[0]), out_size(x.shape[3], k[1], s[1], d[1])
    return np.stack([np.stack([x[:, :, i * d[0]: i * d[0] + s[0] * (Ho - 1) + 1: s[0],
                                    j * d[1]: j * d[1] + s[1] * (Wo - 1) + 1: s[1]]
                               for j in range(k[1])], axis=2) for i in range(k[0])], axis=2)


def unwindows(cols: Array, shape: tuple[int, ...], s: Pair, d: Pair) -> Array:
    """col2im, the adjoint of ``windows``: (m, C, kh, kw, Ho, Wo) -> ``shape`` (m, C, H, W), each
    element the sum of the window entries that read it (overlapping windows accumulate)."""
    _, _, kh, kw, Ho, Wo = cols.shape
    x = np.zeros(shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            x[:, :, i * d[0]: i * d[0] + s[0] * (Ho - 1) + 1: s[0],
              j * d[1]: j * d[1] + s[1] * (Wo - 1) + 1: s[1]] += cols[:, :, i, j]
    return x
