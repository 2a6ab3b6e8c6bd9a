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
    return yaml.safe_load(text)


def _simulate(args, params):
    from sdofm.sources.synthetic import SyntheticSun, generate

    generate(SyntheticSun(**params), args.out)
    return {"out": args.out}


def _pull(args, params):
    import shutil

    import pandas as pd

    from sdofm.io import atomic_output
    from sdofm.sources.credentials import check_storage_options
    from sdofm.sources.sdoml import pull_store, store_url

    src, data = params["sources"], params["data"]
    root = args.source or src["sdoml"]
    if root == "synthetic":
        msg = "sources.sdoml is 'synthetic': pass --source with the synthetic mirror's folder"
        raise SdofmError(msg)
    start, end = pd.Timestamp(data["start"]), pd.Timestamp(data["end"])
    opts = src.get("storage_options") or {}
    check_storage_options(opts)
    windows = {}
    if args.period:  # one month's share of the pull, for that month's build
        from sdofm.dataset.build import pull_windows

        windows = pull_windows(data, args.period)
    cadence = pd.Timedelta(minutes=data["cadence_minutes"])
    tolerance = pd.Timedelta(minutes=data["tolerance_minutes"])
    stores = [
        ("aia", src["aia_store"], data["aia_channels"], cadence),
        ("hmi", src["hmi_store"], data["hmi_components"], cadence),
        ("eve", src["eve_store"], data["eve_lines"], None),
    ]
    if src.get("fits") is not None:  # AIA/HMI come from level-1 FITS (ingest-period): EVE only
        stores = stores[2:]
    counts = {}
    # Resumable: after an outage the re-run keeps the stores already pulled and each store's
    # copied blocks (they live beside the declared output, which Snakemake deletes on failure).
    with atomic_output(args.out, resumable=True) as tmp:
        tmp.mkdir(exist_ok=True)
        kinds = {kind for kind, *_ in stores}
        for stale in tmp.iterdir():  # stores of an earlier request this one no longer pulls
            if stale.name.split(".")[0] not in kinds:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        try:
            for kind, name, names, step in stores:
                counts[kind] = pull_store(
                    store_url(root, name),
                    tmp / f"{kind}.zarr",
                    kind=kind,
                    start=start,
                    end=end,
                    names=names,
                    cadence=step,
                    tolerance=tolerance if step is not None else None,
                    storage_options=opts,
                    window=windows.get("eve" if kind == "eve" else "images"),
                    retries=src.get("retries"),
                )
        except BaseException:
            if not any(f.is_file() for f in tmp.rglob("*")):  # nothing copied to resume
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return counts


def _events(args, params):
    import tempfile

    from sdofm.sources.events import collect_events
    from sdofm.sources.eventsources import event_files, resolve_event_sources

    data = params["data"]
    src = resolve_event_sources(
        params["sources"]["events"],
        synthetic=params["sources"]["sdoml"] == "synthetic" or args.source is not None,
        config_files=[args.config] if args.config else [],
    )
    src.update({k: v for k, v in (("flares", args.flares), ("f107", args.f107)) if v})
    if args.goes:
        src["goes"] = args.goes
    with tempfile.TemporaryDirectory(prefix="sdofm-events-") as downloads:
        files = event_files(src, mirror=args.source, downloads=downloads, data=data)
        return collect_events(
            files["flares"],
            files["f107"],
            args.out,
            start=data["start"],
            end=data["end"],
            goes=files["goes"],
        )


def _fetch_events(args, params):
    from sdofm.sources.eventsources import fetch_event

    data = params["data"]
    return {args.kind: fetch_event(args.kind, args.out, start=data["start"], end=data["end"])}


def _ingest(args, params):
    from sdofm.sources.ingest import ingest_fits

    result = ingest_fits(
        args.files,
        args.out,
        image_size=args.image_size,
        correction_table=args.correction_table,
        instrument=args.instrument,
    )
    return {k: v for k, v in result.items() if k != "quarantined"} | {
        "quarantined": len(result.get("quarantined", []))
    }


def _ingest_period(args, params):
    from sdofm.sources.fitsfolder import (
        MIRROR,
        MIRROR_TABLE,
        fits_files,
        ingest_period,
        resolve_fits_sources,
    )

    data, src = params["data"], params["sources"]
    mirror = Path(args.source) if args.source else None
    fits = resolve_fits_sources(
        src.get("fits") or {},
        data,
        synthetic=src["sdoml"] == "synthetic" or mirror is not None,
        config_files=[args.config] if args.config else [],
    )
    files = {}
    for key in ("aia", "hmi"):
        spec = fits[key] or (mirror / MIRROR[key] if mirror else None)
        files[key] = getattr(args, key) or (fits_files(spec) if spec else [])
    table = args.correction_table or fits["correction_table"]
    if table is None and mirror is not None:
        table = mirror / MIRROR_TABLE
    return ingest_period(
        args.out,
        data=data,
        period=args.period,
        aia=files["aia"],
        hmi=files["hmi"] if data["hmi_components"] else [],
        correction_table=table,
    )


def _surya(args, params):
    from sdofm.dataset.surya import export_surya, import_surya

    if args.command == "surya-export":
        return export_surya(args.dataset, args.out)
    return import_surya(args.index, args.out)


def _build(args, params):
    from sdofm.dataset.build import build_dataset, build_partition

    if args.period:
        return build_partition(args.sdoml, args.out, params, args.period, args.frames)
    return build_dataset(args.sdoml, args.out, params)


def _merge(args, params):
    from sdofm.dataset.build import merge_partitions

    return merge_partitions(args.parts, args.out, params)


def _verify(args, params):
    from sdofm.dataset.integrity import verify_dataset

    return verify_dataset(args.dataset)


def _pretrain(args, params):
    import os

    from sdofm.training.layout import watch_requeue_signals
    from sdofm.training.lock import run_lock

    if "SLURM_JOB_ID" in os.environ:
        watch_requeue_signals()  # before the slow imports: SLURM may warn during start-up
    with run_lock(Path(args.out).parent):  # also before them: a second run stops at once
        from sdofm.training.pretrain import pretrain

        return pretrain(args.dataset, args.out, params)


def _embed(args, params):
    from sdofm.embeddings.extract import extract_embeddings, merge_embeddings

    if args.parts:
        return merge_embeddings(args.parts, args.dataset, args.out)
    if not args.checkpoint:
        msg = "give the pretrained backbone with --checkpoint"
        raise SdofmError(msg)
    return extract_embeddings(args.dataset, args.checkpoint, args.out, params, period=args.period)


def _similar(args, params):
    from sdofm.embeddings.explore import similar_times

    found = similar_times(args.embeddings, args.time, k=args.k, exclude_hours=args.exclude_hours)
    print(f"{'time (UTC)':<16}  {'cosine_distance':>15}  split")
    for row in found.itertuples():
        print(f"{row.time:%Y-%m-%dT%H:%M}  {row.cosine_distance:>15.4f}  {row.split}")
    return {"query": found.attrs["query"], "found": len(found)}


def _map(args, params):
    from sdofm.embeddings.explore import embedding_map

    return embedding_map(args.embeddings, args.dataset, args.png, args.csv)


def _benchmark(args, params):
    """All arms of a task and their scores (no --group); or one group of its arms, saved."""
    import numpy as np

    from sdofm.benchmarks import runner as rn
    from sdofm.benchmarks import task_class
    from sdofm.benchmarks.arm_groups import BASELINES, ArmGroup, write_group
    from sdofm.config import validate_block

    task_cls = task_class(args.task)
    params = dict(params)
    protocol = validate_block(params.pop("protocol", {}), "protocol")
    params = validate_block(params, "benchmarks", args.task) | {"protocol": protocol}
    backbone = args.command == "benchmark" and args.group != BASELINES
    if backbone and not (args.embeddings and args.checkpoint):
        msg = f"give --embeddings and --checkpoint (only --group {BASELINES} needs no backbone)"
        raise SdofmError(msg)
    inputs = rn.TaskInputs(
        Path(args.dataset),
        Path(args.embeddings) if backbone else None,
        Path(args.checkpoint) if backbone else None,
        Path(args.events) if args.events else None,
        Path(args.truth) if args.truth else None,
    )
    if args.group is None:
        result = rn.run_task(task_cls, inputs, args.out, params)
    elif args.command == "score":
        from sdofm.benchmarks.arm_groups import read_group

        task, samples = rn.prepare(task_cls, inputs, params)
        task.arms(samples)  # built, never trained: the state the task's extra() and figures() read
        groups = [read_group(path) for path in args.group]
        result = rn.score_groups(task, samples, groups, args.out)
    else:
        try:
            task, samples = rn.prepare(task_cls, inputs, params)
        except rn.NotApplicable as err:  # scored without this run, the reason in metrics.json
            empty = np.array([], str)
            write_group(
                ArmGroup(args.group, empty, empty, {}, {}, meta={"not_applicable": str(err)}),
                args.out,
            )
            return {"group": args.group, "not_applicable": str(err)}
        if backbone:
            group = rn.fm_group(task, samples, args.group)
        else:
            group = rn.baseline_group(task, samples)
        write_group(group, args.out)
        return {"group": group.name, "arms": sorted(group.arms)}
    metric = result["headline"]["metric"]
    return {
        "headline": result["headline"]["label"],
        **{arm: v["metrics"][metric]["value"] for arm, v in result["arms"].items()},
        "verdicts": result["verdicts"],
    }


def _sweep(args, params):
    from snakemake.utils import Paramspace

    from sdofm.io import atomic_output
    from sdofm.sweep import PROBE, sweep_points, sweep_table

    points = sweep_points(params)
    runs = [r for r in args.runs.split(",") if r]
    if runs != list(Paramspace(points, filename_params="*").instance_patterns):
        msg = f"--runs {args.runs!r} are not the runs of the sweep's points"
        raise SdofmError(msg)
    table = sweep_table(points, runs, params.get("select", PROBE), Path(args.results))
    with atomic_output(args.out) as tmp:
        table.to_csv(tmp, index=False)
    return {"chosen": table.loc[table["chosen"], "run"].item()}


def _report(args, params):
    from sdofm.reports.render import render_report

    render_report(args.notebook, args.executed, args.html, params)
    return {"html": args.html}


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options of every subcommand, taken before or after it (``sdofm pretrain --threads 4``)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        help="CPU threads for torch (the rules pass Snakemake's `threads`: several jobs on one "
        "machine must not each spin up a thread per core)",
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

    p = add("simulate", "write the synthetic Sun as SDOML v2 stores plus ground truth", _simulate)
    p.add_argument("--out", required=True, help="folder for the stores")
    p = add("pull", "copy a time range and channels of SDOML v2 stores (any fsspec URL)", _pull)
    p.add_argument("--source", help="folder URL of the stores (overrides sources.sdoml)")
    p.add_argument("--out", required=True, help="folder for aia.zarr, hmi.zarr, eve.zarr")
    p.add_argument(
        "--period",
        help="pull only what the build of this partition (YYYY-MM, its first month) reads",
    )
    p = add("events", "copy flares, daily F10.7 and GOES XRS into the workflow's layout", _events)
    p.add_argument("--source", help="the synthetic mirror: its files stand in for unset sources")
    p.add_argument("--flares", help="flare list file, or 'goes' (overrides sources.events)")
    p.add_argument("--f107", help="F10.7 file (overrides sources.events.f107)")
    p.add_argument("--goes", nargs="+", help="GOES XRS file(s) (overrides sources.events.goes)")
    p.add_argument("--out", required=True, help="folder for flares.csv, f107.csv, goes_xrs.csv")
    p = add("fetch-events", "download a flare list (HEK) or F10.7 (LISIRD)", _fetch_events)
    p.add_argument("kind", choices=["flares", "f107"], help="what to download")
    p.add_argument("--out", required=True, help="the downloaded file (CSV)")
    p = add(
        "ingest",
        "calibrate level-1 AIA/HMI FITS files into an SDOML v2 store (aiapy)",
        _ingest,
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
        _ingest_period,
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
        p = add(name, help_, _surya, settings=False, inputs=(source.lstrip("-"),))
        p.add_argument(source, required=True, help=source_help)
        p.add_argument("--out", required=True, help=out_help)
    p = add(
        "build",
        "build the ML-ready Zarr: aligned index, splits, train-only statistics",
        _build,
        inputs=("sdoml", "frames"),
    )
    p.add_argument("--sdoml", required=True, help="folder written by `sdofm pull`")
    p.add_argument("--frames", help="folder with this month's aia.zarr/hmi.zarr (FITS source)")
    p.add_argument("--out", required=True, help="the ML-ready store (.zarr)")
    p.add_argument(
        "--period", help="build only this partition (YYYY-MM, its first month), to merge"
    )
    p = add("merge", "merge monthly partitions into the ML-ready Zarr", _merge, inputs=("parts",))
    p.add_argument("parts", nargs="+", help="partition stores written by `sdofm build --period`")
    p.add_argument("--out", required=True, help="the ML-ready store (.zarr)")
    p = add(
        "verify",
        "check every image chunk of an ML-ready store",
        _verify,
        settings=False,
        inputs=("dataset",),
    )
    p.add_argument("dataset", help="the ML-ready store (.zarr)")
    p = add("pretrain", "pretrain the backbone (Lightning)", _pretrain, inputs=("dataset",))
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--out", required=True, help="checkpoint path (.ckpt)")
    p = add(
        "embed",
        "embeddings of every time step (xarray Zarr)",
        _embed,
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
        _similar,
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
        _map,
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
        _benchmark,
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
        _benchmark,
        inputs=("dataset", "events", "truth", "group"),
    )
    p.add_argument("task", choices=task_names(), help="the validation task")
    p.add_argument("group", nargs="+", help="arm groups written by `sdofm benchmark --group`")
    p.add_argument("--dataset", required=True, help="the ML-ready store (.zarr)")
    p.add_argument("--out", required=True, help="folder for metrics.json, predictions.csv ...")
    p.add_argument("--events", help="folder written by `sdofm events` (flares.csv, f107.csv)")
    p.add_argument("--truth", help="the synthetic Sun's ground_truth folder, for planted checks")
    p.set_defaults(embeddings=None, checkpoint=None)
    p = add("sweep", "the sweep's points, scores and choice (validation only)", _sweep)
    p.add_argument("--runs", required=True, help="the points' run names (comma-separated)")
    p.add_argument("--results", required=True, help="the results folder")
    p.add_argument("--out", required=True, help="the sweep table (CSV)")
    p = add(
        "report",
        "execute a report notebook with papermill and convert it to HTML",
        _report,
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
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)  # numpy/scipy BLAS too: spare threads only spin
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
