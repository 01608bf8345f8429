"""Pooling over 2-d windows of (m, C, H, W): MaxPool2d (padding with −inf and dilation, as
torch.nn.MaxPool2d) and AvgPool2d (dilation 1; it counts the padded zeros); ceil_mode False for
both. A window is read in row-major order, k = kh·kw entries (handimpl.layers.windows)."""
from __future__ import annotations

import numpy as np

from ..rounding import accumulation_error, gamma
from .base import Layer
from .windows import out_size, pad, pair, unwindows, windows

Array = np.ndarray
ONE = (1, 1)


def _flat(cols: Array) -> Array:
    """(m, C, kh, kw, Ho, Wo) -> (m, C, Ho, Wo, kh·kw): each window a row-major vector."""
    m, C, kh, kw, Ho, Wo = cols.shape
    return cols.transpose(0, 1, 4, 5, 2, 3).reshape(m, C, Ho, Wo, kh * kw)


def _unflat(v: Array, k) -> Array:
    """The inverse of ``_flat``."""
    m, C, Ho, Wo, _ = v.shape
    return v.reshape(m, C, Ho, Wo, k[0], k[1]).transpose(0, 1, 4, 5, 2, 3)


def first_max(v: Array) -> Array:
    """The index of each window's winner (v (..., k) -> (...)) as torch's CPU kernel picks it:
    scanning in row-major order it takes a value only if ``(val > maxval) || isnan(val)``
    (pytorch/pytorch, aten/src/ATen/native/cpu/MaxPoolKernel.cpp, cpu_max_pool), so among equal
    maxima the first wins, and a window holding nan yields its last nan."""
    nan = np.isnan(v)
    last_nan = v.shape[-1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    return np.where(nan.any(axis=-1), last_nan, np.argmax(v, axis=-1))


def winners(v: Array) -> Array:
    """Each window's winner as a mask (v (..., k) -> bool (..., k)): True at ``first_max`` only,
    so that a window's dy goes to one entry even where several equal its maximum."""
    return np.arange(v.shape[-1]) == first_max(v)[..., None]


def may_win(v: Array, Ev: Array) -> Array:
    """Which entries of each window (..., k) some evaluation with v off by up to Ev makes the
    winner: j can win when it can exceed every entry before it and equal every entry after it
    (v_j + E_j > v_i − E_i for i < j, ≥ for i > j). An exact tie with E = 0 leaves only the first."""
    hi, lo = (v + Ev)[..., :, None], (v - Ev)[..., None, :]       # [..., j, i]
    before = np.tri(v.shape[-1], k=-1, dtype=bool)                 # i < j
    return np.where(before, hi > lo, hi >= lo).all(axis=-1)


def _pool_check(kind: str, k, s, p) -> None:
    if min(k + s) < 1 or min(p) < 0:
        raise ValueError(f"{kind} needs kernel and stride >= 1 and padding >= 0")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"{kind}: padding {p} is more than half the kernel {k} (torch refuses it)")


def _pool_out_shape(layer: Layer, in_shape, k, s, p, d=ONE) -> tuple[int, ...]:
    if len(in_shape) != 3:
        raise ValueError(f"{layer.kind} takes (C, H, W) per example, not {tuple(in_shape)}")
    padded = (in_shape[1] + 2 * p[0], in_shape[2] + 2 * p[1])
    reach = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
    if reach[0] > padded[0] or reach[1] > padded[1]:
        what = "kernel" if d == ONE else "dilated kernel"
        raise ValueError(f"{layer.spec()}: the {what} {reach[0]}x{reach[1]} is larger than the padded input "
                         f"{padded[0]}x{padded[1]}")
    outs = (out_size(padded[0], k[0], s[0], d[0]), out_size(padded[1], k[1], s[1], d[1]))
    for axis, n in enumerate(in_shape[1:]):      # a window of padding alone: torch returns −inf there
        for a in range(outs[axis]):
            if not any(0 <= a * s[axis] - p[axis] + i * d[axis] < n for i in range(k[axis])):
                raise ValueError(f"{layer.spec()}: on {in_shape[1]}x{in_shape[2]} window {a} along "
                                 f"{'HW'[axis]} reads padding only")
    return (in_shape[0], *outs)


def _fmt_pair(v) -> str:
    return str(v[0]) if v[0] == v[1] else f"{v[0]}x{v[1]}"


def _pool_spec(kind: str, k, s, p=(0, 0), d=ONE) -> str:
    return (f"{kind}:{_fmt_pair(k)}" + ("" if s == k else f",s{_fmt_pair(s)}")
            + ("" if p == (0, 0) else f",p{_fmt_pair(p)}") + ("" if d == ONE else f",d{_fmt_pair(d)}"))


class MaxPool2d(Layer):
    """y = max over each window of x̄, x padded with −inf by p (so padding never wins), as
    torch.nn.MaxPool2d (dilation d spaces a window's entries; stride < kernel overlaps windows;
    ceil_mode False). Backward routes each window's dy to its winner, the first maximal entry in
    row-major order (``first_max``: torch's CPU rule); an entry that wins several overlapping
    windows receives the sum. torch refuses p > k/2; a window of padding alone is refused too."""
    kind = "maxpool"
    positional = ("kernel",)
    formula = "y[n,c,a,b] = max_{i,j} x̄[n,c,a·s+i·d,b·s+j·d]   (x̄: x padded with −inf)"
    backward_formulas = {"dx": "∂J/∂x_e = Σ_{windows w won by e} dy_w (winner: the first maximum, row-major)"}

    def __init__(self, kernel, stride=None, padding=0, dilation=1):
        self.k, self.p, self.d = pair(kernel), pair(padding), pair(dilation)
        self.s = self.k if stride is None else pair(stride)
        _pool_check("maxpool", self.k, self.s, self.p)
        if min(self.d) < 1:
            raise ValueError("maxpool needs dilation >= 1")

    def out_shape(self, in_shape):
        return _pool_out_shape(self, in_shape, self.k, self.s, self.p, self.d)

    def torch_module(self, in_shape):
        return "MaxPool2d", {"kernel_size": self.k, "stride": self.s, "padding": self.p, "dilation": self.d}

    def padded(self, x: Array, fill: float = -np.inf) -> Array:
        """x̄: x with p entries of ``fill`` (−inf: padding never wins) on both sides of H and W."""
        return np.pad(x, ((0, 0), (0, 0), (self.p[0],) * 2, (self.p[1],) * 2), constant_values=fill)

    def window_values(self, x: Array, fill: float = -np.inf) -> Array:
        """Each window of x̄ as a row-major vector: (m, C, Ho, Wo, kh·kw)."""
        return _flat(windows(self.padded(x, fill), self.k, self.s, self.d))

    def forward(self, x, p, ctx):
        win = self.window_values(x)                                   # (m, C, Ho, Wo, k) of x̄
        first = first_max(win)                                        # torch's winner of each window
        y = np.take_along_axis(win, first[..., None], axis=-1)[..., 0]  # y = max over the window
        return y, (x.shape, win)

    def _back(self, v: Array, shape) -> Array:
        """Window entries (m, C, Ho, Wo, k) summed back onto x (m, C, H, W): x̄'s padding dropped."""
        m, C, H, W = shape
        full = unwindows(_unflat(v, self.k), (m, C, H + 2 * self.p[0], W + 2 * self.p[1]), self.s, self.d)
        return full[:, :, self.p[0]: self.p[0] + H, self.p[1]: self.p[1] + W]

    def backward(self, dy, cache):
        shape, win = cache
        won = winners(win)                                            # e wins w: e = first_max(w), row-major
        routed = np.where(won, dy[..., None], 0).astype(dy.dtype)     # dy_w to the winner of w, 0 elsewhere
        return self._back(routed, shape), {}                          # ∂J/∂x_e = Σ_{w won by e} dy_w

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        """A max rounds nothing: E_y = max over the window of E_x."""
        return self.window_values(Ex, 0.0).max(axis=-1)

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        """E_dy to each window's winner; where several entries ``may_win`` (within each other's
        error intervals, never an exact tie with E_x = 0), |dy| + E_dy of that window to each of
        them, as a correct evaluation may route it to any; and the rounding of the sums where
        overlapping windows route more than one term to an entry."""
        win, Ewin = self.window_values(x), self.window_values(Ex, 0.0)
        won = winners(win)
        may = may_win(win, Ewin)
        open_ = may.sum(axis=-1, keepdims=True) > 1                   # windows a correct evaluation may route elsewhere
        routed = np.where(open_, may, won)
        held = (np.abs(dy) + Edy)[..., None]
        spread = np.where(open_ & may, held, np.where(won, Edy[..., None], 0.0))

        def back(v):
            return self._back(np.broadcast_to(v, win.shape).astype(np.float64), x.shape)
        return accumulation_error(back(spread), back(np.where(routed, held, 0.0)), back(routed), u), {}

    def options(self):
        return ({"kernel": self.k} | ({} if self.s == self.k else {"stride": self.s})
                | ({} if self.p == (0, 0) else {"padding": self.p}) | ({} if self.d == ONE else {"dilation": self.d}))

    def spec(self):
        return _pool_spec("maxpool", self.k, self.s, self.p, self.d)


class AvgPool2d(Layer):
    """y = the mean of each window of x̄ (x zero-padded by p), as torch.nn.AvgPool2d with
    count_include_pad=True: the divisor is always kh·kw. Backward spreads dy/(kh·kw) over the
    window; overlapping windows accumulate."""
    kind = "avgpool"
    positional = ("kernel",)
    formula = "y[n,c,a,b] = Σ_{i,j} x̄[n,c,a·s+i,b·s+j] / (kh·kw)"
    backward_formulas = {"dx": "∂J/∂x̄_e = Σ_{windows w ∋ e} dy_w / (kh·kw); ∂J/∂x = ∂J/∂x̄ unpadded"}

    def __init__(self, kernel, stride=None, padding=0):
        self.k, self.p = pair(kernel), pair(padding)
        self.s = self.k if stride is None else pair(stride)
        _pool_check("avgpool", self.k, self.s, self.p)

    def out_shape(self, in_shape):
        return _pool_out_shape(self, in_shape, self.k, self.s, self.p)

    def torch_module(self, in_shape):
        return "AvgPool2d", {"kernel_size": self.k, "stride": self.s, "padding": self.p}

    @property
    def size(self) -> int:
        return self.k[0] * self.k[1]

    def forward(self, x, p, ctx):
        xp = pad(x, self.p)                                           # x̄: x zero-padded
        y = windows(xp, self.k, self.s, ONE).sum(axis=(2, 3)) / self.size  # y = Σ_window x̄ / (kh·kw)
        return y, xp.shape

    def _spread(self, v: Array, shape) -> Array:
        """Each window's v over its entries, summed where windows overlap, x̄'s padding dropped."""
        cols = np.broadcast_to(v[:, :, None, None], v.shape[:2] + self.k + v.shape[2:])
        full = unwindows(cols, shape, self.s, ONE)
        return full[:, :, self.p[0]: shape[2] - self.p[0], self.p[1]: shape[3] - self.p[1]]

    def backward(self, dy, cache):
        return self._spread(dy / self.size, cache), {}                # ∂J/∂x_e = Σ_{w ∋ e} dy_w / (kh·kw)

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        """A sum of kh·kw terms, then a division: Σ E_x/k + γ_k Σ(|x| + E_x)/k."""
        held = windows(pad(np.abs(x) + Ex, self.p), self.k, self.s, ONE).sum(axis=(2, 3)) / self.size
        spread = windows(pad(Ex, self.p), self.k, self.s, ONE).sum(axis=(2, 3)) / self.size
        return spread + gamma(self.size, u) * held + tiny

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        """Each entry sums dy/k over the r windows that hold it, each quotient rounded:
        Σ E_dy/k + γ_r Σ(|dy| + E_dy)/k."""
        shape = pad(x, self.p).shape
        r = self._spread(np.ones(dy.shape), shape)
        held = self._spread((np.abs(dy) + Edy) / self.size, shape)
        return self._spread(Edy / self.size, shape) + gamma(r, u) * held + tiny, {}

    def options(self):
        return ({"kernel": self.k} | ({} if self.s == self.k else {"stride": self.s})
                | ({} if self.p == (0, 0) else {"padding": self.p}))

    def spec(self):
        return _pool_spec("avgpool", self.k, self.s, self.p)
