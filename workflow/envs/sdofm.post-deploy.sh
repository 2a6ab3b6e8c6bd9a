#!/usr/bin/env bash
# Snakemake runs this inside workflow/envs/sdofm.yaml's fresh conda environment (from a copy in
# .snakemake/conda/, so the repository is named by SDOFM_WORKFLOW_ROOT, which
# workflow/rules/common.smk sets to the checkout's absolute path).
# The package is installed editable: the rules then run the checkout's code, as `script:` rules
# would, and an edit or a `git pull` needs no new environment.
set -euo pipefail
root="${SDOFM_WORKFLOW_ROOT:?set by workflow/rules/common.smk: the repository to install}"
python -m pip install --no-deps -e "$root"
