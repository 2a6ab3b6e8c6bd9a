"""The data stages of the `sdofm` command: simulate, pull, events, ingest, build, merge, verify.

Each takes the parsed arguments and the stage's settings and returns the summary the command
prints; the imports are inside, so `sdofm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from sdofm import SdofmError

__all__ = [
    "build",
    "events",
    "fetch_events",
    "ingest",
    "ingest_period",
    "merge",
    "pull",
    "simulate",
    "surya",
    "verify",
]


def simulate(args, params):
    from sdofm.sources.synthetic import SyntheticSun, generate

    generate(SyntheticSun(**params), args.out, workers=args.threads or 1)
    return {"out": args.out}


def pull(args, params):
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


def events(args, params):
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


def fetch_events(args, params):
    from sdofm.sources.eventsources import fetch_event

    data = params["data"]
    return {args.kind: fetch_event(args.kind, args.out, start=data["start"], end=data["end"])}


def ingest(args, params):
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


def ingest_period(args, params):
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


def surya(args, params):
    from sdofm.dataset.surya import export_surya, import_surya

    if args.command == "surya-export":
        return export_surya(args.dataset, args.out)
    return import_surya(args.index, args.out)


def build(args, params):
    from sdofm.dataset.build import build_dataset, build_partition

    if args.period:
        return build_partition(args.sdoml, args.out, params, args.period, args.frames)
    return build_dataset(args.sdoml, args.out, params)


def merge(args, params):
    from sdofm.dataset.build import merge_partitions

    return merge_partitions(args.parts, args.out, params)


def verify(args, params):
    from sdofm.dataset.integrity import verify_dataset

    return verify_dataset(args.dataset)
