"""The `sdofm` command: one subcommand per stage of the workflow, so each step runs by hand too.

Every subcommand takes its settings either as ``--config FILE`` (a whole workflow config, from
which it picks its blocks) or as ``--params JSON`` (just those blocks, which is what the
Snakemake rules pass so that a change to one stage's settings re-runs only that stage).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from sdofm import SdofmError, __version__
from sdofm.config import task_names
from sdofm.stages import data, models

__all__ = ["main"]

# The config blocks each stage reads.
SECTIONS = {
    "simulate": ["synthetic"],
    "pull": ["sources", "data"],
    "events": ["sources", "data"],
    "fetch-events": ["data"],
    "ingest-period": ["sources", "data"],
    "build": ["data", "splits"],
    "merge": ["data", "splits"],
    "pretrain": ["pretrain"],
    "embed": ["embed"],
    "sweep": ["sweep"],
}


def _params(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of this stage, from --params (JSON or a YAML/JSON file) or --config."""
    from sdofm.config import load_config

    if args.config:
        config = load_config(args.config)
        if args.command in ("benchmark", "score"):
            if args.task not in config.get("benchmarks", {}):
                msg = f"config {args.config} has no benchmarks.{args.task} block"
                raise SdofmError(msg)
            return config["benchmarks"][args.task] | {"protocol": config["protocol"]}
        blocks = SECTIONS[args.command]
        return config[blocks[0]] if len(blocks) == 1 else {b: config[b] for b in blocks}
    if args.params is None:
        msg = "give the settings with --config FILE or --params JSON"
        raise SdofmError(msg)
    text = args.params
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            msg = f"--params {text!r} is neither JSON nor an existing file"
            raise SdofmError(msg)
        text = path.read_text()
    try:
        return json.loads(text)  # what the rules pass: JSON, parsed 10x faster than as YAML
    except json.JSONDecodeError:
        return yaml.safe_load(text)


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options of every subcommand, taken before or after it (``sdofm pretrain --threads 4``)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help="CPU threads for torch, or simulate's frame-rendering processes (the rules pass "
        "Snakemake's `threads`: several jobs on one machine must not each spin up a thread per "
        "core)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdofm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")

    def add(
        name: str, help_: str, func, *, settings: bool = True, inputs: tuple[str, ...] = ()
    ) -> argparse.ArgumentParser:
        """A subcommand; ``inputs`` are the options naming paths that must exist."""
        p = sub.add_parser(name, help=help_, description=help_)
        _global_options(p, argparse.SUPPRESS)  # a value given before the subcommand stays
        if settings:
            g = p.add_mutually_exclusive_group()
            g.add_argument("--config", help="workflow config YAML (validated; blocks picked out)")
            g.add_argument("--params", help="this stage's config blocks as JSON or a file")
        p.set_defaults(func=func, inputs=inputs)
        return p

    p = add(
        "simulate", "write the synthetic Sun as SDOML v2 stores plus ground truth", data.simulate
    )
    p.add_argument("--out", required=True, help="folder for the stores")
    p = add("pull", "copy a time range and channels of SDOML v2 stores (any fsspec URL)", data.pull)
    p.add_argument("--source", help="folder URL of the stores (overrides sources.sdoml)")
    p.add_argument("--out", required=True, help="folder for aia.zarr, hmi.zarr, eve.zarr")
    p.add_argument(
        "--period",
        help="pull only what the build of this partition (YYYY-MM, its first month) reads",
    )
    p = add(
        "events", "copy flares, daily F10.7 and GOES XRS into the workflow's layout", data.events
    )
    p.add_argument("--source", help="the synthetic mirror: its files stand in for unset sources")
    p.add_argument("--flares", help="flare list file, or 'goes' (overrides sources.events)")
    p.add_argument("--f107", help="F10.7 file (overrides sources.events.f107)")
    p.add_argument("--goes", nargs="+", help="GOES XRS file(s) (overrides sources.events.goes)")
    p.add_argument("--out", required=True, help="folder for flares.csv, f107.csv, goes_xrs.csv")
    p = add("fetch-events", "download a flare list (HEK) or F10.7 (LISIRD)", data.fetch_events)
    p.add_argument("kind", choices=["flares", "f107"], help="what to download")
    p.add_argument("--out", required=True, help="the downloaded file (CSV)")
    p = add(
        "ingest",
        "calibrate level-1 AIA/HMI FITS files into an SDOML v2 store (aiapy)",
        data.ingest,
        settings=False,
    )
    p.add_argument("files", nargs="+", help="level-1 FITS files (e.g. a JSOC export)")
    p.add_argument("--out", required=True, help="SDOML v2 store to create or append to")
    p.add_argument(
        "--instrument",
        choices=["aia", "hmi"],
        default="aia",
        help="aia: AIA level 1; hmi: line-of-sight magnetograms (hmi.M_720s) as Blos",
    )
    p.add_argument("--image-size", type=int, default=512, help="pixels per side (SDOML: 512)")
    p.add_argument("--correction-table", help="aiapy degradation table (aia_V*_response_table.txt)")
    p = add(
        "ingest-period",
        "ingest one month of the level-1 FITS of sources.fits (aia.zarr, hmi.zarr)",
        data.ingest_period,
    )
    p.add_argument("--period", required=True, help="the partition, YYYY-MM (its first month)")
    p.add_argument("--out", required=True, help="folder for the month's aia.zarr and hmi.zarr")
    p.add_argument("--source", help="the synthetic mirror: its fits/ stand in for unset sources")
    p.add_argument("--aia", nargs="+", help="AIA level-1 files (overrides sources.fits.aia)")
    p.add_argument("--hmi", nargs="+", help="HMI magnetograms (overrides sources.fits.hmi)")
    p.add_argument("--correction-table", help="aiapy degradation table")
    for name, help_, source, source_help, out_help in (
        (
            "surya-export",
            "write the ML-ready store in Surya's format (NetCDF per step, index.csv, scalers.yaml)",
            "--dataset",
            "the ML-ready store (.zarr)",
            "folder for the Surya files",
        ),
        (
            "surya-import",
            "read a Surya folder into aia.zarr/hmi.zarr (`sdofm build --frames` takes it)",
            "--index",
            "Surya's index.csv",
            "folder for aia.zarr and hmi.zarr",
        ),
    ):
        p = add(name, help_, data.surya, settings=False, inputs=(source.lstrip("-"),))
        p.add_argument(source, required=True, help=source_help)
        p.add_argument("--out", required=True, help=out_help)
    p = add(
        "build",
        "build the ML-ready Zarr: aligned index, splits, train-only statistics",
        data.build,
        inputs=("sdoml", "frames"),
    )
    p.add_argument("--sdoml", required=True, help="folder written by `sdofm pull`")
    p.add_argument("--frames", help="folder with this month's aia.zarr/hmi.zarr (FITS source)")
    p.add_argument("--out", required=True, help="the ML-ready store (.zarr)")
    p.add_argument(
        "--period", help="build only this partition (YYYY-MM, its first month), to merge"
    )
    p = add(
        "merge", "merge monthly partitions into the ML-ready Zarr", data.merge, inputs=("parts",)
    )
    p.add_argument("parts", nargs="+", help="partition stores written by `sdofm build --period`")
    p.add_argument("--out", required=True, help="the ML-ready store (.zarr)")
    p = add(
        "verify",
        "check every image chunk of an ML-ready store",
        data.verify,
        settings=False,
        inputs=("dataset",),
    )
    p.add_argument("dataset", help="the ML-ready store (.zarr)")
    p = add("pretrain", "pretrain the backbone (Lightning)", models.pretrain, inputs=("dataset",))
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--out", required=True, help="checkpoint path (.ckpt)")
    p = add(
        "embed",
        "embeddings of every time step (xarray Zarr)",
        models.embed,
        inputs=("dataset", "checkpoint", "parts"),
    )
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--checkpoint", help="the pretrained backbone (not with --merge)")
    p.add_argument("--out", required=True, help="the embeddings (.zarr)")
    p.add_argument(
        "--period", help="embed only this partition (YYYY-MM, its first month), as a part to merge"
    )
    p.add_argument("--merge", dest="parts", nargs="+", help="join these monthly parts instead")
    p = add(
        "similar",
        "the k time steps nearest a given time in embedding space",
        models.similar,
        settings=False,
        inputs=("embeddings",),
    )
    p.add_argument("--embeddings", required=True, help="embeddings written by `sdofm embed`")
    p.add_argument("--time", required=True, help="the query time (UTC), e.g. 2011-03-07T12:00")
    p.add_argument("-k", type=int, default=5, help="how many times to list (default 5)")
    p.add_argument("--exclude-hours", type=float, default=24.0, help="skip steps this close")
    p = add(
        "map",
        "2-D map (PCA) of the embeddings coloured by activity",
        models.map,
        settings=False,
        inputs=("embeddings", "dataset"),
    )
    p.add_argument("--embeddings", required=True, help="embeddings written by `sdofm embed`")
    p.add_argument("--dataset", required=True, help="the ML-ready store (activity per time)")
    p.add_argument("--png", required=True, help="the map (PNG)")
    p.add_argument("--csv", required=True, help="the map's coordinates per time step (CSV)")
    p = add(
        "benchmark",
        "run a validation task: FM head vs the paper's baseline",
        models.benchmark,
        inputs=("dataset", "embeddings", "checkpoint", "events", "truth"),
    )
    p.add_argument("task", choices=task_names(), help="the validation task")
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--embeddings", help="embeddings written by `sdofm embed`")
    p.add_argument("--checkpoint", help="the pretrained backbone (.ckpt)")
    p.add_argument(
        "--group",
        help="train only this group of arms and save it to --out (.nc): 'baselines' (the task's "
        "own arms, no backbone) or a run's name (its FM head and random-init control)",
    )
    p.add_argument("--out", required=True, help="folder for metrics.json, predictions.csv ...")
    p.add_argument("--events", help="folder written by `sdofm events` (flares.csv, f107.csv)")
    p.add_argument("--truth", help="the synthetic Sun's ground_truth folder, for planted checks")
    p = add(
        "score",
        "score a task's saved arm groups together (paired block bootstrap): metrics.json ...",
        models.benchmark,
        inputs=("dataset", "events", "truth", "group"),
    )
    p.add_argument("task", choices=task_names(), help="the validation task")
    p.add_argument("group", nargs="+", help="arm groups written by `sdofm benchmark --group`")
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--out", required=True, help="folder for metrics.json, predictions.csv ...")
    p.add_argument("--events", help="folder written by `sdofm events` (flares.csv, f107.csv)")
    p.add_argument("--truth", help="the synthetic Sun's ground_truth folder, for planted checks")
    p.set_defaults(embeddings=None, checkpoint=None)
    p = add("sweep", "the sweep's points, scores and choice (validation only)", models.sweep)
    p.add_argument("--runs", required=True, help="the points' run names (comma-separated)")
    p.add_argument("--results", required=True, help="the results folder")
    p.add_argument("--out", required=True, help="the sweep table (CSV)")
    p = add(
        "report",
        "execute a report notebook with papermill and convert it to HTML",
        models.report,
        settings=False,
        inputs=("notebook",),
    )
    p.add_argument("--notebook", required=True, help="the parameterised notebook (.ipynb)")
    p.add_argument("--executed", required=True, help="executed notebook (.ipynb)")
    p.add_argument("--html", required=True, help="the report (self-contained HTML)")
    p.add_argument(
        "-p",
        dest="parameters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="notebook parameter (repeatable)",
    )
    return parser


def _log_to_stderr() -> None:
    """Progress and status lines, timestamped, each written out at once (``tail -f`` a log)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    log = logging.getLogger("sdofm")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    sys.stdout.reconfigure(line_buffering=True)
    from sdofm.sources.credentials import redact_library_logs

    redact_library_logs()  # what the I/O libraries log goes to the same job log


def _check_inputs(args: argparse.Namespace) -> None:
    """A path a subcommand reads that does not exist: one line naming the option."""
    for dest in args.inputs:
        value = getattr(args, dest)
        for path in [value] if isinstance(value, str) else value or []:
            if "://" not in path and not Path(path).exists():
                option = {"parts": "--merge" if args.command == "embed" else "parts"}.get(
                    dest, f"--{dest}"
                )
                msg = f"{option}: {path} does not exist"
                raise SdofmError(msg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _log_to_stderr()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # numpy/scipy BLAS too: spare threads only spin
        if args.command != "simulate":  # its threads are frame-rendering processes (no torch)
            import torch

            torch.set_num_threads(args.threads)
    started = time.perf_counter()
    try:
        _check_inputs(args)
        if args.command == "report":
            params = dict(p.split("=", 1) for p in args.parameters)
        elif args.command in ("ingest", "similar", "map", "surya-export", "surya-import", "verify"):
            params = {}
        else:
            params = _params(args)
        summary = args.func(args, params)
    except SdofmError as err:
        print(f"sdofm {args.command}: error: {err}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    # The summary line goes to the job log; where stdout is the product (a table), to stderr.
    print(
        json.dumps({"command": args.command, "seconds": round(elapsed, 2), **summary}, default=str),
        file=sys.stderr if args.command == "similar" else sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
