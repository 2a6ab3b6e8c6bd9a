"""What the Snakefile imports leaves Snakemake's logging alone (a root handler made Snakemake
print every line twice, and the SLURM test count each job twice)."""

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
