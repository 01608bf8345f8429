"""Execute the example notebooks (docs/notebooks) and compare their outputs with the committed ones.

`python tests/notebook_outputs.py` executes each notebook and writes its outputs back, for a
contributor who changed one (or changed what it shows); tests/test_notebooks.py checks that the
committed outputs are what executing them gives, apart from what varies from run to run."""
from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("*.ipynb"))
TIMEOUT = 300               # seconds a cell may take (a sweep of 40 cases takes about 10 s)

# What varies from run to run, replaced by a placeholder before comparing: durations, addresses,
# temporary paths, the kernel's own file names.
VARYING = ((re.compile(r"\d+(?:\.\d+)?\s?(?:ms|µs|s|seconds?|min)\b"), "<time>"),
           (re.compile(r"0x[0-9a-fA-F]+"), "<address>"),
           (re.compile(r"/tmp/[^\s'\"<]*"), "<tmp>"),
           (re.compile(r"/[^\s'\"<]*ipykernel_\d+/\d+\.py"), "<cell>"))


# The sweeps draw their cases with hypothesis, whose draws for a seed change between its versions,
# and numbers print through numpy and pandas: outputs are compared exactly in the environment that
# made them (the README's, recorded in each notebook's metadata), elsewhere by their kinds alone.
PACKAGES = ("hypothesis", "numpy", "pandas", "torch")


def environment() -> dict[str, str]:
    return {"python": ".".join(platform.python_version_tuple()[:2]),
            **{name: importlib.metadata.version(name) for name in PACKAGES}}


def made_with(book: nbformat.NotebookNode) -> dict[str, str]:
    return dict(book.metadata.get("verify", {}).get("outputs_made_with", {}))


def execute(path: Path) -> nbformat.NotebookNode:
    book = nbformat.read(path, as_version=4)
    NotebookClient(book, timeout=TIMEOUT, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return book


def normalised(text: str) -> str:
    for pattern, placeholder in VARYING:
        text = pattern.sub(placeholder, text)
    return text.rstrip()


def shown(output: nbformat.NotebookNode) -> str:
    """What a reader sees of one output: a stream's text; a DataFrame's table as text (its HTML
    differs between pandas versions, not its content); verify's summaries as their HTML. A
    warning's text on stderr depends on the versions installed; only its presence is compared."""
    if output.output_type == "stream":
        return "[stderr]" if output.name == "stderr" else f"[{output.name}] {output.text}"
    if output.output_type == "error":
        return f"[error] {output.ename}: {output.evalue}"
    data = output.get("data", {})
    html = data.get("text/html", "")
    if not html or 'class="dataframe' in html:
        return data.get("text/plain", "")
    return html


def trimmed(book: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as committed: no run-to-run metadata, and no plain-text repr beside a verify
    summary's HTML (a result's dataclass repr runs to megabytes; a notebook shows the HTML)."""
    book.metadata["verify"] = {"outputs_made_with": environment()}
    for cell in book.cells:
        cell.get("metadata", {}).pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data and 'class="dataframe' not in data["text/html"]:
                data.pop("text/plain", None)
    return book


def outputs(book: nbformat.NotebookNode) -> list[list[str]]:
    """Each code cell's outputs, as shown, normalised; stderr merged into one entry per cell."""
    cells = []
    for cell in book.cells:
        if cell.cell_type == "code":
            shown_ = [normalised(shown(o)) for o in cell.get("outputs", [])]
            cells.append([o for i, o in enumerate(shown_) if o != "[stderr]" or "[stderr]" not in shown_[:i]])
    return cells


def kinds(book: nbformat.NotebookNode) -> list[list[str]]:
    """Each code cell's outputs by kind (a stream's name, an error, HTML or plain text; a stream
    written in several pieces counted once), for an environment other than the one that made the
    committed outputs."""
    def kind(o: nbformat.NotebookNode) -> str:
        if o.output_type in ("stream", "error"):
            return o.get("name", "error")
        return "text/html" if "text/html" in o.get("data", {}) else "text/plain"
    cells = []
    for cell in book.cells:
        if cell.cell_type == "code":
            found = [kind(o) for o in cell.get("outputs", []) if o.get("name") != "stderr"]
            cells.append([k for i, k in enumerate(found) if i == 0 or k != found[i - 1]])
    return cells


def main() -> int:
    for path in NOTEBOOKS:
        nbformat.write(trimmed(execute(path)), path)
        print(f"executed {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
