import json
import shlex
import sys

from sdofm import SdofmError
from sdofm.config import validate_config
from sdofm.dataset.build import partitions
from sdofm.training.layout import launcher

try:
    validate_config(config)
except SdofmError as err:
    sys.exit(f"Invalid configuration: {err}")

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
BACKBONE = config["pretrain"]["backbone"]
SYNTHETIC = config["sources"]["sdoml"] == "synthetic"
TASKS = sorted(config["benchmarks"])
PERIODS = partitions(
    config["data"]
)  # pull, build and embeddings run as one job per month, then a merge
NOTEBOOKS = os.path.join(workflow.basedir, "..", "notebooks")
# The software of every rule: the pinned environment of the repository (same pins as pyproject).
ENV = "../../environment.yml"


wildcard_constraints:
    task="|".join(TASKS),
    period=r"\d{4}-\d{2}",


def as_arg(*sections):
    """Config blocks as one shell-quoted JSON argument for `sdofm ... --params`."""
    blocks = (
        {s: config[s] for s in sections} if len(sections) > 1 else config[sections[0]]
    )
    return shlex.quote(json.dumps(blocks, sort_keys=True))


def benchmark_params(wildcards):
    """A task's block and the shared protocol, as `sdofm benchmark --params` takes them."""
    block = config["benchmarks"][wildcards.task] | {"protocol": config["protocol"]}
    return shlex.quote(json.dumps(block, sort_keys=True))


def training_launcher(wildcards, resources, threads):
    return launcher(resources, threads)


def runtime_for(minutes):
    """Runtime (min) growing with each attempt, so a job killed at its limit retries longer."""

    def runtime(wildcards, attempt):
        return minutes * attempt

    return runtime


def all_reports():
    return expand(f"{RESULTS}/{{task}}/report.html", task=TASKS)
