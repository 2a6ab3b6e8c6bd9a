"""Execute a parameterised notebook with papermill and convert it to self-contained HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbconvert import HTMLExporter

from sdofm import SdofmError
from sdofm.io import atomic_output

__all__ = ["render_report"]

# JupyterLab's template without its CDN scripts (require.js, MathJax, mermaid): reports need
# none of them, and must open offline (clusters, air-gapped machines).
TEMPLATES = Path(__file__).parent / "templates"


def render_report(
    notebook: str | Path, executed: str | Path, html: str | Path, parameters: dict[str, Any]
) -> None:
    """Run ``notebook`` with ``parameters`` into ``executed`` (.ipynb), then write ``html``.

    Code cells are hidden in the HTML; a cell that raises stops the report with its error.
    """
    with atomic_output(executed) as tmp_nb:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(tmp_nb),
                parameters=parameters,
                progress_bar=False,
                kernel_name="python3",  # runs in the caller's folder: relative paths hold
            )
        except papermill.PapermillExecutionError as err:
            msg = f"report {notebook} failed in cell {err.exec_count}: {err.ename}: {err.evalue}"
            raise SdofmError(msg) from None
        exporter = HTMLExporter(
            template_name="offline",
            extra_template_basedirs=[str(TEMPLATES)],
            exclude_input=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
        )
        nb = nbformat.read(tmp_nb, as_version=4)
        for cell in nb.cells:  # papermill gives its cell a random id: the HTML would differ
            if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
                cell["id"] = "injected-parameters"
        nbformat.write(nb, tmp_nb)
        heading = next(
            (ln[2:] for c in nb.cells if c.cell_type == "markdown" for ln in c.source.splitlines()
             if ln.startswith("# ")),
            Path(notebook).stem,
        )  # fmt: skip
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": heading}})
    with atomic_output(html) as tmp_html:
        tmp_html.write_text(body)
