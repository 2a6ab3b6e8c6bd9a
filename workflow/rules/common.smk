import json
import re
import shlex
import sys

from snakemake.utils import Paramspace

from sdofm import SdofmError
from sdofm.config import check_task, pretrain_runs, runnable_tasks, validate_config
from sdofm.dataset.build import partitions
from sdofm.sources.eventsources import event_inputs, resolve_event_sources
from sdofm.sources.fitsfolder import fits_inputs, resolve_fits_sources
from sdofm.sweep import PROBE, sweep_points, sweep_runs
from sdofm.training.layout import launcher

try:
    validate_config(config)
except SdofmError as err:
    sys.exit(f"Invalid configuration: {err}")

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
# The named runs (pretrain.runs; one named after the backbone when unset), each pretrained,
# embedded and benchmarked under its name. The first run's FM head keeps the arm name fm_head.
RUNS = pretrain_runs(config["pretrain"])
RUN = next(iter(RUNS))
# A sweep (config `sweep`): one named run per point of its Paramspace, chosen on validation.
SWEEP = None
if config.get("sweep"):
    try:
        SWEEP = Paramspace(sweep_points(config["sweep"]), filename_params="*")
        RUNS |= sweep_runs(config, RUNS, list(SWEEP.instance_patterns))
    except SdofmError as err:
        sys.exit(f"Invalid configuration: {err}")
SYNTHETIC = config["sources"]["sdoml"] == "synthetic"
TASKS = runnable_tasks(config)  # truth_probe: on the synthetic Sun only
CONFIG_FILES = [
    os.path.join(workflow.basedir, "..", "config", "config.yaml"),
    *map(str, workflow.overwrite_configfiles),
]
# Event data and level-1 FITS: files (relative to the config file that names them), fetches,
# or the synthetic mirror's.
try:
    EVENT_SOURCES = resolve_event_sources(
        config["sources"]["events"], synthetic=SYNTHETIC, config_files=CONFIG_FILES
    )
    EVENT_INPUTS = event_inputs(EVENT_SOURCES, f"{RESULTS}/data/downloads")
    FITS = resolve_fits_sources(
        config["sources"].get("fits"),
        config["data"],
        synthetic=SYNTHETIC,
        config_files=CONFIG_FILES,
    )
    FITS_INPUTS = fits_inputs(FITS)
except SdofmError as err:
    sys.exit(f"Invalid configuration: {err}")
PERIODS = partitions(
    config["data"]
)  # pull, build and embeddings run as one job per month, then a merge
NOTEBOOKS = os.path.join(workflow.basedir, "..", "notebooks")
# The software of all rules with --software-deployment-method conda, the pinned environment of
# the repository (same pins as pyproject); its post-deploy script installs this checkout's
# package, which it finds through SDOFM_WORKFLOW_ROOT.
ENV = "../envs/sdofm.yaml"
# (Set here for that script, not read: nothing for a user to provide.)
os.environ.update(
    SDOFM_WORKFLOW_ROOT=os.path.abspath(os.path.join(workflow.basedir, ".."))
)


wildcard_constraints:
    task="|".join(TASKS),
    run="|".join(map(re.escape, RUNS)),
    period=r"\d{4}-\d{2}",
    kind="flares|f107",


# How the SDOML v2 stores are reached: only the pull reads these.
SOURCE_ACCESS = ("sources.storage_options", "sources.retries")


def as_arg(*sections, omit=()):
    """Config blocks as one shell-quoted JSON argument for `sdofm ... --params`, without the
    keys in `omit` ("sources.storage_options"): what a rule's command does not read (the
    config holds no credentials: validation refuses them)."""
    blocks = {s: dict(config[s]) for s in sections}
    for key in omit:
        section, name = key.split(".")
        blocks[section].pop(name, None)
    blocks = blocks if len(sections) > 1 else blocks[sections[0]]
    return shlex.quote(json.dumps(blocks, sort_keys=True))


def events_settings():
    """What `sdofm events` reads, no more: a change elsewhere (image size, channels) keeps it."""
    blocks = {
        "sources": {k: config["sources"][k] for k in ("sdoml", "events")},
        "data": {k: config["data"][k] for k in ("start", "end")},
    }
    return shlex.quote(json.dumps(blocks, sort_keys=True))


def event_args(wildcards, input):
    """`sdofm events` options naming the event files (the mirror's stand in when unset)."""
    args = [f"--source {input.synthetic}"] if SYNTHETIC else []
    if EVENT_SOURCES["flares"] == "goes":
        args.append("--flares goes")
    for key in ("flares", "f107", "goes"):
        if key in EVENT_INPUTS:
            files = [input[key]] if isinstance(input[key], str) else list(input[key])
            args.append(f"--{key} " + " ".join(map(shlex.quote, files)))
    return " ".join(args)


def fits_args(wildcards, input):
    """`sdofm ingest-period` options naming the FITS files (the mirror's stand in when unset)."""
    args = [f"--source {input.synthetic}"] if SYNTHETIC else []
    for key, option in (
        ("aia", "--aia"),
        ("hmi", "--hmi"),
        ("correction_table", "--correction-table"),
    ):
        if key in FITS_INPUTS:
            args.append(f"{option} " + " ".join(map(shlex.quote, input[key])))
    return " ".join(args)


def benchmark_params(wildcards):
    """A task's block and the shared protocol, as `sdofm benchmark --params` takes them."""
    block = config["benchmarks"][wildcards.task] | {"protocol": config["protocol"]}
    return shlex.quote(json.dumps(block, sort_keys=True))


def run_settings(wildcards):
    """A named run's complete pretrain block, as `sdofm pretrain --params` takes it."""
    return shlex.quote(json.dumps(RUNS[wildcards.run], sort_keys=True))


def arm_groups(wildcards):
    """A task's saved arm groups, scored together: each run's (the first first), the baselines'."""
    return [
        f"{RESULTS}/{wildcards.task}/arms/{group}.nc" for group in [*RUNS, "baselines"]
    ]


def sweep_inputs(wildcards):
    """What the sweep's choice reads: the task's metrics.json, or each point's pretraining."""
    select = config["sweep"].get("select", PROBE)
    if select != PROBE:
        return [f"{RESULTS}/{select}/metrics.json"]
    return [f"{RESULTS}/pretrain/{run}/model.ckpt" for run in SWEEP.instance_patterns]


def training_launcher(wildcards, resources, threads):
    return launcher(resources, threads)


def runtime_for(minutes):
    """Runtime (min) growing with each attempt, so a job killed at its limit retries longer."""

    def runtime(wildcards, attempt):
        return minutes * attempt

    return runtime


def unknown_task(wildcards):
    """Input function of `unknown_task`, which stops listing the tasks where Snakemake would
    only say that no rule produces the file."""
    try:
        check_task(wildcards.unknown, TASKS)
    except SdofmError as err:
        sys.exit(f"Unknown target {RESULTS}/{wildcards.unknown}/...: {err}")
    return []


def all_reports():
    return expand(f"{RESULTS}/{{task}}/report.html", task=TASKS)
