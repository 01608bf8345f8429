"""The mutation zoo: classic backprop bugs, each a one-line variant of handimpl.

A mutant names one exact piece of handimpl source (``old``, which must occur
exactly once in ``handimpl/<module>.py``) and what it becomes (``new``); the
formula it breaks is written before → after in the tutorial's notation. Each
mutant also says where its bug can show: the activations, losses and dtypes
its sweep draws from (a relu′(0) bug needs relu; a 1/m bug needs a 'mean'
loss), so that no example is spent where the mutant cannot differ.
verify.mutants.run builds and runs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Mutant:
    name: str
    title: str                      # the bug in words
    before: str                     # the correct formula
    after: str                      # what the mutant computes
    module: str                     # handimpl module holding ``old``: network | activations | losses |
                                    # layers.<module> (a layer's: its sweep draws stacks holding ``layer``)
    old: str                        # exact source text, occurring once in that module
    new: str                        # its replacement
    activations: tuple[str, ...] | None = None   # where the bug can show (None: all)
    losses: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    max_depth: int = 3
    layer: str | None = None        # a layer mutant: the layer kind its stacks must hold
    optimizer: str | None = None    # an optimizer mutant (module 'optim'): the optimizer it breaks,
    hyper: tuple[tuple[str, Any], ...] = ()   # and the hyperparameters its bug needs (the rest drawn)

    @property
    def change(self) -> str:
        return f"{self.before} → {self.after}"


SMOOTH = ("sigmoid", "tanh")

ZOO: tuple[Mutant, ...] = (
    Mutant("hidden_fprime_dropped", "f′ dropped in a hidden layer",
           "δˡ = (δˡ⁺¹Wˡ⁺¹) ⊙ f′(zˡ)", "δˡ = δˡ⁺¹Wˡ⁺¹", "network",
           "delta[l] = f[l].vjp(zs[l], a[l], delta[l + 1] @ W[l + 1])",
           "delta[l] = delta[l + 1] @ W[l + 1]",
           activations=SMOOTH, losses=("mse_loss",)),
    Mutant("fprime_of_a", "f′ evaluated at the output a instead of z",
           "δᴸ = ∂J/∂aᴸ ⊙ f′(zᴸ)", "δᴸ = ∂J/∂aᴸ ⊙ f′(aᴸ)", "network",
           "delta[L] = f[L].vjp(zs[L], a[L], dJ_da)",
           "delta[L] = f[L].vjp(a[L], f[L].f(a[L]), dJ_da)",
           activations=SMOOTH, losses=("mse_loss",)),
    Mutant("sigmoid_prime_is_sigmoid", "σ′ taken as σ itself",
           "σ′(z) = a(1 − a)", "σ′(z) = a", "activations",
           "return (1 - a) * a", "return a",
           activations=("sigmoid",), losses=("mse_loss", "binary_cross_entropy")),
    Mutant("weight_grad_transposed", "the weight gradient missing a transpose",
           "∂J/∂Wˡ = δˡᵀaˡ⁻¹", "∂J/∂Wˡ = (aˡ⁻¹)ᵀδˡ", "network",
           "nabla_w[l] = delta[l].T @ a[l - 1]", "nabla_w[l] = a[l - 1].T @ delta[l]"),
    Mutant("weight_grad_wrong_activation", "aˡ used where aˡ⁻¹ belongs",
           "∂J/∂Wˡ = δˡᵀaˡ⁻¹", "∂J/∂Wˡ = δˡᵀaˡ", "network",
           "nabla_w[l] = delta[l].T @ a[l - 1]", "nabla_w[l] = delta[l].T @ a[l]"),
    Mutant("wrong_layer_weight", "Wˡ used where Wˡ⁺¹ belongs",
           "δˡ = (δˡ⁺¹Wˡ⁺¹) ⊙ f′(zˡ)", "δˡ = (δˡ⁺¹Wˡ) ⊙ f′(zˡ)", "network",
           "delta[l] = f[l].vjp(zs[l], a[l], delta[l + 1] @ W[l + 1])",
           "delta[l] = f[l].vjp(zs[l], a[l], delta[l + 1] @ W[l])",
           activations=SMOOTH + ("relu",), losses=("mse_loss",)),
    Mutant("one_over_m_dropped", "the mean's 1/m dropped from ∂J/∂a",
           "∂J/∂aᴸ = (1/m) ∂ℓ/∂aᴸ", "∂J/∂aᴸ = ∂ℓ/∂aᴸ", "losses",
           "return (self.dterms(a, y, **opts) / self.count(a, reduction)).astype(a.dtype, copy=False)",
           "return self.dterms(a, y, **opts).astype(a.dtype, copy=False)",
           losses=("quadratic", "cross_entropy")),
    Mutant("one_over_m_twice", "1/m applied twice (once in δ, again in ∂J/∂W)",
           "∂J/∂Wˡ = δˡᵀaˡ⁻¹", "∂J/∂Wˡ = (1/m) δˡᵀaˡ⁻¹", "network",
           "nabla_w[l] = delta[l].T @ a[l - 1]", "nabla_w[l] = delta[l].T @ a[l - 1] / len(x)",
           losses=("quadratic", "mse_loss")),
    Mutant("bias_grad_averaged", "the bias gradient averaged over the batch instead of summed",
           "∂J/∂bˡ = Σᵢ δˡᵢ", "∂J/∂bˡ = (1/m) Σᵢ δˡᵢ", "network",
           "nabla_b[l] = delta[l].sum(axis=0)", "nabla_b[l] = delta[l].mean(axis=0)",
           losses=("quadratic", "mse_loss", "cross_entropy")),
    Mutant("canonical_shortcut_misused", "δᴸ = (a − y)/m used with a non-canonical loss",
           "δᴸ = ∂J/∂aᴸ ⊙ f′(zᴸ)", "δᴸ = (aᴸ − y)/m", "network",
           "delta[L] = f[L].vjp(zs[L], a[L], dJ_da)", "delta[L] = (a[L] - y) / len(y)",
           activations=SMOOTH, losses=("l1_loss", "huber_loss", "smooth_l1_loss")),
    Mutant("softmax_elementwise", "softmax treated as elementwise (its Jacobian's diagonal only)",
           "δ = a ⊙ (g − Σⱼ gⱼaⱼ)", "δ = g ⊙ a(1 − a)", "activations",
           "return a * (g - (g * a).sum(axis=1, keepdims=True))", "return g * a * (1 - a)",
           activations=("softmax",), losses=("mse_loss",)),
    Mutant("relu_prime_at_zero_is_one", "relu′(0) = 1 (torch takes 0 at the kink)",
           "relu′(z) = [z > 0]", "relu′(z) = [z ≥ 0]", "activations",
           "return (z > 0).astype(z.dtype)", "return (z >= 0).astype(z.dtype)",
           activations=("relu",), losses=("mse_loss",)),
    Mutant("mse_mean_over_m", "mse_loss averaged over m instead of m·k",
           "J = Σ(a − y)²/(m·k)", "J = Σ(a − y)²/m", "losses",
           'name, canonical = "mse_loss", ("identity",)\n',
           'name, canonical = "mse_loss", ("identity",)\n\n'
           '    def count(self, a, reduction):\n'
           '        return a.shape[0] if reduction == "mean" else 1\n',
           activations=("identity", "tanh"), losses=("mse_loss",)),
    Mutant("update_wrong_sign", "the SGD update with the wrong sign",
           "Wˡ := Wˡ − η ∂J/∂Wˡ", "Wˡ := Wˡ + η ∂J/∂Wˡ", "network",
           'W_new = W - lr * grads[f"dW{l}"]', 'W_new = W + lr * grads[f"dW{l}"]'),
    Mutant("float32_upcast", "float32 silently upcast to float64",
           "zˡ = aˡ⁻¹Wˡᵀ (float32)", "zˡ = float64(aˡ⁻¹)Wˡᵀ (float64)", "network",
           "z = activations[-1] @ W.T", "z = activations[-1].astype(np.float64) @ W.T",
           dtypes=("float32",)),
)

# Layer mutants: each breaks one line of a layer class (handimpl/layers/); its sweep draws layer
# stacks that hold that layer kind (verify.sweep.strategies.stack_cases, kinds=).
NORM = "layers.norm"
WINNER_MASK = "won = winners(win)                                            # e wins w: e = first_max(w), row-major"
LAYER_ZOO: tuple[Mutant, ...] = (
    Mutant("batchnorm_mean_term_dropped", "batch norm's backward without the Σdx̂ term (the path through μ)",
           "dx = (1/σ)(dx̂ − mean(dx̂) − x̂·mean(dx̂⊙x̂))", "dx = (1/σ)(dx̂ − x̂·mean(dx̂⊙x̂))", NORM,
           "- self.mean(dxhat)                      # through μ", "# (the path through μ dropped)",
           layer="batchnorm"),
    Mutant("batchnorm_variance_term_dropped", "batch norm's backward without the x̂·Σ(dx̂⊙x̂) term (through σ)",
           "dx = (1/σ)(dx̂ − mean(dx̂) − x̂·mean(dx̂⊙x̂))", "dx = (1/σ)(dx̂ − mean(dx̂))", NORM,
           "- xhat * self.mean(dxhat * xhat))       # through σ", ")", layer="batchnorm"),
    Mutant("batchnorm_unbiased_variance", "the unbiased variance used to normalise",
           "σ² = (1/N) Σ(x − μ)²", "σ² = 1/(N − 1) Σ(x − μ)²", NORM,
           "var = self.mean(d * d)                                # σ² = (1/N) Σ (x − μ)²  (biased)",
           "var = (d * d).sum(axis=self.axes, keepdims=True) / max(self.count(x) - 1, 1)", layer="batchnorm"),
    Mutant("batchnorm_gamma_forgotten", "γ forgotten in batch norm's dx",
           "dx̂ = γ·dy", "dx̂ = dy", NORM,
           "dxhat = self.grouped(dy * g)                                          # dx̂ = γ·dy",
           "dxhat = self.grouped(dy)", layer="batchnorm"),
    Mutant("batchnorm_eps_outside_sqrt", "ε added outside the square root",
           "σ = √(σ² + ε)", "σ = √σ² + ε", NORM,
           "inv = 1 / np.sqrt(var + self.eps)                     # 1/σ = 1/√(σ² + ε)",
           "inv = 1 / (np.sqrt(var) + self.eps)", layer="batchnorm"),
    Mutant("batchnorm_running_var_biased", "the running variance updated with the biased variance",
           "σ²_run := (1 − k)σ²_run + k·σ²·N/(N − 1)", "σ²_run := (1 − k)σ²_run + k·σ²", NORM,
           "k * var.reshape(-1) * N / (N - 1)}  # unbiased σ²", "k * var.reshape(-1)}", layer="batchnorm"),
    Mutant("layernorm_over_batch", "layer norm normalising over the batch axis",
           "μ, σ over each example's features", "μ, σ over the batch", NORM,
           "return tuple(range(1, ndim))", "return (0,)", layer="layernorm"),
    Mutant("dropout_scale_forgotten_in_backward", "dropout's 1/(1 − p) forgotten in backward",
           "dx = dy ⊙ mask/(1 − p)", "dx = dy ⊙ mask", "layers.dropout",
           "return dy * cache.astype(dy.dtype), {}", "return dy * (cache > 0).astype(dy.dtype), {}",
           layer="dropout"),
    Mutant("dropout_mask_redrawn", "dropout's mask redrawn in backward (another example's)",
           "dx = dy ⊙ mask/(1 − p)", "dx = dy ⊙ mask′/(1 − p)", "layers.dropout",
           "return dy * cache.astype(dy.dtype), {}", "return dy * cache[::-1].astype(dy.dtype), {}",
           layer="dropout"),
    Mutant("residual_skip_gradient_dropped", "the skip path's gradient dropped",
           "dx = dy + (∂F/∂x)ᵀdy", "dx = (∂F/∂x)ᵀdy", "layers.dropout",
           "return dy + g, grads", "return g, grads", layer="residual"),
    Mutant("conv_kernel_not_flipped", "convolution's dx as a correlation, the kernel not flipped",
           "∂J/∂x̄ = dy ∗ W (full convolution)", "∂J/∂x̄ = dy ⋆ W", "layers.conv",
           "core = correlate(spread, flipped(W), ONE, self.d)",
           "core = correlate(spread, W.transpose(1, 0, 2, 3), ONE, self.d)",
           layer="conv2d"),
    Mutant("conv_padding_ignored_in_backward", "convolution's padding ignored in backward: dx read from x̄'s corner",
           "∂J/∂x[h, w] = ∂J/∂x̄[h + p, w + p]", "∂J/∂x[h, w] = ∂J/∂x̄[h, w]", "layers.conv",
           "return full[:, :, p[0]: shape[2] - p[0], p[1]: shape[3] - p[1]]",
           "return full[:, :, : shape[2] - 2 * p[0], : shape[3] - 2 * p[1]]", layer="conv2d"),
    Mutant("maxpool_gradient_to_whole_window", "max pooling's gradient sent to every element of the window",
           "dx_e = dy_w for the window's winner e", "dx_e = dy_w for every e in w", "layers.pool",
           WINNER_MASK, "won = np.ones(win.shape, bool)", layer="maxpool"),
    Mutant("conv_stride_ignored_in_dW", "convolution's stride ignored in ∂W: x̄ read at stride 1",
           "∂J/∂W[o,c,i,j] = Σ dy[n,o,a,b]·x̄[n,c,a·s+i·d,b·s+j·d]",
           "∂J/∂W[o,c,i,j] = Σ dy[n,o,a,b]·x̄[n,c,a+i·d,b+j·d]", "layers.conv",
           "dW = kernel_gradient(xp, dy, self.k, self.s, self.d)",
           "dW = kernel_gradient(xp, dy, self.k, ONE, self.d)", layer="conv2d"),
    Mutant("maxpool_gradient_to_every_tied_element", "max pooling's gradient given to every element equal to the max",
           "dx_e = dy_w for the window's first maximum e", "dx_e = dy_w for every e equal to the maximum of w",
           "layers.pool", WINNER_MASK, "won = win == win.max(axis=-1, keepdims=True)", layer="maxpool"),
    Mutant("groupnorm_groups_ignored", "group norm normalising all channels together (G ignored)",
           "μ, σ per group of C/G channels", "μ, σ over all C channels", NORM,
           "return x.reshape(x.shape[0], self.groups, -1)", "return x.reshape(x.shape[0], 1, -1)",
           layer="groupnorm"),
    Mutant("dropout_scale_forgotten_in_forward", "dropout's 1/(1 − p) forgotten in forward",
           "y = x ⊙ mask/(1 − p)", "y = x ⊙ mask", "layers.dropout",
           "return x * scale.astype(x.dtype), scale", "return x * (scale > 0).astype(x.dtype), scale",
           layer="dropout"),
    Mutant("embedding_rows_overwritten", "repeated embedding indices overwritten instead of accumulated",
           "∂J/∂W[r] = Σ_{x = r} dy", "∂J/∂W[r] = dy of the last x = r", "layers.embedding",
           "np.add.at(dW, x, dy)", "dW[x] = dy", layer="embedding"),
)
# Optimizer bugs (handimpl/optim.py): each killed by `verify train`'s one-step comparison, which
# starts every step from torch.optim's exact state (verify.train.run).
OPTIM_ZOO: tuple[Mutant, ...] = (
    Mutant("adam_no_bias_correction", "Adam without bias correction",
           "θ ← θ − η/(1 − β₁ᵗ) · m/(√v/√(1 − β₂ᵗ) + ε)", "θ ← θ − η·m/(√v + ε)", "optim",
           "step_size = lr / (1 - beta1 ** t)                          # η/(1 − β₁ᵗ)\n"
           "        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps       # √v/√(1 − β₂ᵗ) + ε",
           "step_size = lr\n        denom = np.sqrt(v) + eps", optimizer="adam"),
    Mutant("adam_eps_inside_sqrt", "Adam's ε inside the square root",
           "√v̂ + ε", "√(v̂ + ε)", "optim",
           "denom = np.sqrt(v) / math.sqrt(1 - beta2 ** t) + eps       # √v/√(1 − β₂ᵗ) + ε",
           "denom = np.sqrt(v / (1 - beta2 ** t) + eps)", optimizer="adam"),
    Mutant("adamw_l2_not_decoupled", "L2 weight decay where decoupled decay (AdamW) was meant",
           "θ ← θ(1 − ηλ), then Adam", "g ← g + λθ, then Adam", "optim",
           "theta = theta * (1 - lr * wd)                          # θ ← θ(1 − ηλ)   (AdamW)",
           "g = g + wd * theta", optimizer="adamw"),
    Mutant("sgd_dampening_forgotten", "momentum with dampening forgotten",
           "b ← μb + (1 − τ)g", "b ← μb + g", "optim",
           "b = mu * b + (1 - tau) * g                         # b ← μb + (1 − τ)g",
           "b = mu * b + g", optimizer="sgd", hyper=(("momentum", 0.9), ("dampening", 0.5))),
    Mutant("sgd_nesterov_wrong_term", "Nesterov momentum applied to the wrong term",
           "g ← g + μb", "g ← b + μg", "optim",
           "g = g + mu * b if h[\"nesterov\"] else b                 # g ← g + μb  |  g ← b",
           "g = b + mu * g if h[\"nesterov\"] else b", optimizer="sgd",
           hyper=(("momentum", 0.9), ("nesterov", True))),
    Mutant("adam_step_count_from_zero", "Adam's step count starting at 0",
           "t = 1 at the first step", "t = 0 at the first step", "optim",
           "t = float(s.get(\"step\", 0.0)) + 1                              # t ← t + 1",
           "t = float(s.get(\"step\", -1.0)) + 1", optimizer="adam"),
)
ZOO = ZOO + LAYER_ZOO + OPTIM_ZOO

BY_NAME: dict[str, Mutant] = {m.name: m for m in ZOO}
