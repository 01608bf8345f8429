"""Dropout and the residual block."""
from __future__ import annotations

from .base import Context, Layer


class Dropout(Layer):
    """Inverted dropout with drop probability p (torch.nn.Dropout(p)): in training mode
    y = x ⊙ mask/(1 − p), mask the keep-mask (True: kept); in eval mode the identity.

    The mask is the case's, drawn from its seed and given to both sides (Context.masks), so that
    they can agree exactly. Backward uses that same mask: ∂J/∂x = dy ⊙ mask/(1 − p)."""
    kind = "dropout"
    positional = ("p",)
    needs_mask = True
    torch_names = {}
    formula = "y = x ⊙ mask/(1 − p)"
    backward_formulas = {"dx": "∂J/∂x = dy ⊙ mask/(1 − p)"}

    def __init__(self, p: float = 0.5):
        self.p = float(p)
        if not 0 <= self.p < 1:
            raise ValueError(f"dropout:{p!r}: the drop probability must lie in [0, 1)")

    def torch_module(self, in_shape):
        return "", {}                    # verify writes it: torch's own dropout draws its own mask

    def _scale(self, ctx: Context | None):
        if ctx is None or not ctx.training or self.p == 0:
            return None
        return ctx.mask / (1 - self.p)

    def forward(self, x, p, ctx):
        scale = self._scale(ctx)
        if scale is None:
            return x, None                                    # eval mode: the identity
        return x * scale.astype(x.dtype), scale               # y = x ⊙ mask/(1 − p)

    def backward(self, dy, cache):
        if cache is None:
            return dy, {}
        return dy * cache.astype(dy.dtype), {}                # ∂J/∂x = dy ⊙ mask/(1 − p)

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        scale = self._scale(ctx)
        if scale is None:
            return Ex
        return Ex * scale + 2 * u * (abs(x) + Ex) * scale    # 1/(1 − p) rounded, and the product

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        scale = self._scale(ctx)
        if scale is None:
            return Edy, {}
        return Edy * scale + 2 * u * (abs(dy) + Edy) * scale, {}

    def spec(self):
        return f"dropout:{self.p!r}"


class Residual(Layer):
    """y = x + F(x), F a stack of layers that keeps x's shape (one or two layers of the same
    width); backward: ∂J/∂x = dy + F's backward of dy (the skip path and the branch)."""
    kind = "residual"
    formula = "y = x + F(x)"
    backward_formulas = {"dx": "∂J/∂x = dy + (∂F/∂x)ᵀdy"}

    def __init__(self, inner: list[Layer]):
        self.inner = tuple(inner)
        if not self.inner:
            raise ValueError("a residual block needs at least one layer")
        if any(layer.kind in ("residual", "embedding", "dropout") for layer in self.inner):
            raise ValueError("a residual block holds plain layers (no residual block, embedding or dropout inside)")

    def out_shape(self, in_shape):
        shape = in_shape
        for layer in self.inner:
            shape = layer.out_shape(shape)
        if shape != in_shape:
            raise ValueError(f"residual({'>'.join(l.spec() for l in self.inner)}) maps {in_shape} to {shape}: "
                             f"its branch must keep the shape")
        return in_shape

    @property
    def min_batch(self):                                      # type: ignore[override]
        return max(layer.min_batch for layer in self.inner)

    @property
    def needs_mask(self):                                     # type: ignore[override]
        return False                                          # (dropout inside a block: not drawn)

    def param_shapes(self, in_shape):
        out, shape = {}, in_shape
        for j, layer in enumerate(self.inner, start=1):
            out.update({f"{j}.{k}": v for k, v in layer.param_shapes(shape).items()})
            shape = layer.out_shape(shape)
        return out

    def init(self, in_shape, rng, dtype):
        p, shape = {}, in_shape
        for j, layer in enumerate(self.inner, start=1):
            p.update({f"{j}.{k}": v for k, v in layer.init(shape, rng, dtype).items()})
            shape = layer.out_shape(shape)
        return p

    @property
    def param_names(self):
        return tuple(f"{j}.{k}" for j, layer in enumerate(self.inner, start=1) for k in layer.param_names)

    @property
    def buffer_names(self):
        return tuple(f"{j}.{k}" for j, layer in enumerate(self.inner, start=1) for k in layer.buffers)

    @staticmethod
    def _own(p, j):
        prefix = f"{j}."
        return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}

    def torch_module(self, in_shape):
        return "", {}                    # verify writes it: x + Sequential(...)(x)

    def forward(self, x, p, ctx):
        h, caches = x, []
        for j, layer in enumerate(self.inner, start=1):
            h, cache = layer.forward(h, self._own(p, j), ctx)
            caches.append(cache)
        return x + h, caches                                  # y = x + F(x)

    def backward(self, dy, cache):
        g, grads = dy, {}
        for j in range(len(self.inner), 0, -1):
            g, own = self.inner[j - 1].backward(g, cache[j - 1])
            grads.update({f"{j}.{k}": v for k, v in own.items()})
        return dy + g, grads                                  # ∂J/∂x = dy + (∂F/∂x)ᵀdy

    def updated(self, p, cache):
        out = {}
        for j, layer in enumerate(self.inner, start=1):
            out.update({f"{j}.{k}": v for k, v in layer.updated(self._own(p, j), cache[j - 1]).items()})
        return out

    def _branch(self, x, Ex, p, u, tiny, ctx):
        """Each inner layer's input, its bound, and the branch's output and bound (float64)."""
        xs, Es, h, E = [], [], x, Ex
        for j, layer in enumerate(self.inner, start=1):
            xs.append(h)
            Es.append(E)
            own = self._own(p, j)
            E = layer.forward_error(h, E, own, u, tiny, ctx)
            h = layer.forward(h, own, ctx if ctx is not None else Context())[0]
        return xs, Es, h, E

    def forward_error(self, x, Ex, p, u, tiny, ctx=None):
        _, _, h, E = self._branch(x, Ex, p, u, tiny, ctx)
        return Ex + E + u * (abs(x) + Ex + abs(h) + E)       # the sum of two paths, rounded

    def backward_error(self, x, Ex, p, dy, Edy, u, tiny, ctx=None):
        xs, Es, _, _ = self._branch(x, Ex, p, u, tiny, ctx)
        g, Eg, grads = dy, Edy, {}
        caches = self.forward(x, p, ctx if ctx is not None else Context())[1]
        for j in range(len(self.inner), 0, -1):
            layer, own = self.inner[j - 1], self._own(p, j)
            Eg_next, E_own = layer.backward_error(xs[j - 1], Es[j - 1], own, g, Eg, u, tiny, ctx)
            g = layer.backward(g, caches[j - 1])[0]
            Eg = Eg_next
            grads.update({f"{j}.{k}": v for k, v in E_own.items()})
        return Edy + Eg + u * (abs(dy) + Edy + abs(g) + Eg), grads

    def buffer_errors(self, x, Ex, p, u):
        xs, Es, _, _ = self._branch(x, Ex, p, u, 0.0, Context())
        out = {}
        for j, layer in enumerate(self.inner, start=1):
            own = layer.buffer_errors(xs[j - 1], Es[j - 1], self._own(p, j), u)
            out.update({f"{j}.{k}": v for k, v in own.items()})
        return out

    def spec(self):
        return "residual(" + ">".join(layer.spec() for layer in self.inner) + ")"
