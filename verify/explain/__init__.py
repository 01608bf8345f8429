"""`verify explain`: why each δ formula is what autograd computes (verify.explain.page builds
the page from the sections of backward, conventions, shortcut and tutorial; graph runs torch
and reads its autograd nodes; layers explains layer stacks and one layer on given arrays;
steps and render hold the page's parts and their text, Markdown and HTML).

The package is also callable, for a notebook: ``verify.explain("2-2-1:sigmoid:quadratic")``,
``verify.explain("4>linear:3>batchnorm>relu>linear:2|cross_entropy")`` or
``verify.explain("tutorial")`` returns the page, which a notebook renders inline
(``_repr_html_``); ``format="text" | "md" | "html"`` returns its text instead. Importing the
package imports no torch; the call does."""
from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from verify.explain.steps import Explanation


class CallableModule(types.ModuleType):
    """verify.explain, callable: verify.explain(SPEC or 'tutorial', seed=None, batch=None, format=None)."""

    def __call__(self, spec: Any = "tutorial", seed: int | None = None, batch: int | None = None, *,
                 format: str | None = None) -> "Explanation | str":
        from verify.explain.page import page
        return page(spec, seed=seed, batch=batch, format=format)


sys.modules[__name__].__class__ = CallableModule
