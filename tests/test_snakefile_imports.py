"""What the Snakefile and the report notebooks import: no root log handler (it made Snakemake
print every line twice, and the SLURM test count each job twice), no model code in a report."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_the_snakefile_imports_add_no_root_log_handler():
    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    modules = re.findall(r"^from (sdofm[\w.]*) import", common, re.M)
    assert "sdofm.dataset.build" in modules
    code = "import logging\n" + "".join(f"import {m}\n" for m in modules)
    code += "print(len(logging.getLogger().handlers))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", "a module the Snakefile imports configures root logging"


def test_the_report_notebooks_import_no_model_code():
    """A notebook reads results: its imports load neither torch nor scikit-learn (importing
    every task module through `sdofm.benchmarks` cost each report ~6 s of CPU)."""
    import nbformat

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        code = "".join(
            line + "\n"
            for cell in cells
            if cell.cell_type == "code"
            for line in cell.source.splitlines()
            if line.startswith(("import ", "from "))
        )
        code += "import sys\nprint(sorted({'torch', 'sklearn'} & set(sys.modules)))"
        env = {"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == "[]", f"{path.name} imports {out.stdout.strip()}"
