"""`verify explain`: why each δ formula is what autograd computes (verify.explain.page builds
the page from the sections of backward, conventions, shortcut and tutorial; graph runs torch
and reads its autograd nodes; steps and render hold the page's parts and their text, Markdown
and HTML)."""
