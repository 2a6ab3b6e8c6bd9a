"""Read, subset and write stores in the SDOML v2 layout (AIA, HMI and EVE)."""

from __future__ import annotations

import functools
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.progress import progress as progress_counter
from sdofm.sources.credentials import redact_url
from sdofm.sources.sdoml_copy import Progress, copy_frames, with_retries, writing
from sdofm.sources.sdoml_layout import (
    COMPRESSOR,
    EVE_GROUP,
    create_eve_arrays,
    format_eve_times,
)
from sdofm.sources.sdoml_select import select_frames

__all__ = [
    "AIA_CHANNELS",
    "COMPRESSOR",
    "EVE_GROUP",
    "HMI_COMPONENTS",
    "HMI_LOS",
    "HMI_PRODUCTS",
    "eve_times",
    "format_tai",
    "frame_times",
    "open_store",
    "parse_tobs",
    "pull_store",
    "store_url",
]

AIA_CHANNELS = ("94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A")
HMI_COMPONENTS = ("Bx", "By", "Bz")  # SDOML v2's HMI store: the vector field (G)
HMI_LOS = "Blos"  # line-of-sight magnetograms (hmi.M_*): their own product, never Bz
HMI_PRODUCTS = (*HMI_COMPONENTS, HMI_LOS)
EVE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


def store_url(root: str, name: str) -> str:
    """Join an fsspec folder URL (or local path) and a store name."""
    return f"{root.rstrip('/')}/{name}"


def open_store(url: str, storage_options: dict[str, Any] | None = None) -> zarr.Group:
    """Open an SDOML v2 store read-only from any fsspec URL or local path."""
    opts = storage_options or None
    if "://" not in url or url.startswith("file://"):
        opts = None  # local files take no storage options
        path = url.removeprefix("file://")
        if not Path(path).exists():
            msg = f"no SDOML v2 store at {redact_url(url)}: the path does not exist"
            raise SdofmError(msg)
    elif url.startswith(("http://", "https://")) and opts:
        # 'anon' (no credentials, for s3/gcs) means nothing to HTTP, which would pass it on
        # to every request: a mirror of the public bucket takes the same options.
        opts = {k: v for k, v in opts.items() if k != "anon"} or None
    try:
        return zarr.open_group(url, mode="r", storage_options=opts)
    except Exception as err:  # fsspec/zarr raise many types for a missing store
        msg = f"cannot open SDOML v2 store at {url}: {type(err).__name__}: {err}"
        raise SdofmError(redact_url(msg)) from None


def parse_tobs(values: Iterable[str]) -> pd.DatetimeIndex:
    """Parse AIA (`2011-01-01T00:00:07.84Z`, UTC) and HMI (`2011.01.01_00:00:34_TAI`) T_OBS.

    HMI times are TAI, ahead of UTC by the leap seconds so far (34 s in 2011, 37 s since 2017);
    sunpy's `~sunpy.time.parse_time` reads the JSOC form and astropy converts it to UTC, so
    both instruments align on one clock.
    """
    texts = [str(v) for v in values]
    utc = [pd.Timestamp(t.rstrip("Z")) if not t.endswith("_TAI") else None for t in texts]
    tai = [i for i, t in enumerate(texts) if t.endswith("_TAI")]
    if tai:
        from sunpy.time import parse_time

        # parse_time reads a list in the form of its first entry: whole and fractional
        # seconds (``00:00:02.898_TAI``) are parsed apart.
        for fraction in (False, True):
            part = [i for i in tai if ("." in texts[i].split("_")[1]) == fraction]
            if part:
                converted = parse_time([texts[i] for i in part]).utc.to_datetime()
                for i, t in zip(part, np.atleast_1d(converted), strict=True):
                    utc[i] = pd.Timestamp(t)
    return pd.DatetimeIndex(utc)


@functools.lru_cache(maxsize=4096)  # every HMI component of a frame has the same time
def format_tai(t: pd.Timestamp) -> str:
    """An HMI-style TAI T_OBS label (``2011.01.01_00:00:34_TAI``) for a UTC time."""
    from astropy.time import Time

    tai = pd.Timestamp(Time(t.to_pydatetime(), scale="utc").tai.to_datetime())
    return tai.strftime("%Y.%m.%d_%H:%M:%S_TAI")


def frame_times(array: zarr.Array) -> pd.DatetimeIndex:
    """Observation times of an AIA/HMI array, one per frame, from its `T_OBS` attrs list."""
    tobs = array.attrs.get("T_OBS")
    if tobs is None or len(tobs) != array.shape[0]:
        msg = f"array {array.path} has {array.shape[0]} frames but T_OBS lists {len(tobs or [])}"
        raise SdofmError(msg)
    return parse_tobs(tobs)


def eve_times(group: zarr.Group) -> pd.DatetimeIndex:
    """Times of the EVE MEGS-A group (`Time` strings, `%Y-%m-%d %H:%M:%S.%f`)."""
    return pd.to_datetime(np.asarray(group["Time"][:]).tolist(), format=EVE_TIME_FORMAT)


def _year_groups(store: zarr.Group, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    years = sorted(k for k in store.group_keys() if re.fullmatch(r"\d{4}", k))
    return [y for y in years if start.year <= int(y) <= end.year]


def _finished(out: Path, request: dict[str, Any]) -> dict[str, int] | None:
    """The counts of a finished pull of the same request at ``out`` (a re-run has nothing to do)."""
    if not (out / ".zattrs").is_file():
        return None
    done = zarr.open_group(out, mode="r").attrs.get("sdofm_pull") or {}
    return done.get("counts") if done.get("request") == request else None


def pull_store(
    url: str,
    out: str | Path,
    *,
    kind: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    names: Sequence[str],
    cadence: pd.Timedelta | None = None,
    tolerance: pd.Timedelta | None = None,
    storage_options: dict[str, Any] | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    retries: int | None = None,
) -> dict[str, int]:
    """Copy a time range and a set of channels of an SDOML v2 store to ``out``.

    ``kind`` is ``"aia"``/``"hmi"`` (year groups of frame arrays, names are channels) or ``"eve"``
    (the MEGS-A group, names are lines). The copy keeps the SDOML v2 layout and attrs. With
    ``cadence``, the frame nearest each step ``start + k·cadence`` within ``tolerance`` (default
    half the cadence) is kept, and each frame's step and offset are recorded in the per-frame
    attrs ``sdofm_step`` and ``sdofm_step_offset_s`` (see `select_frames`). With ``window`` only
    the frames such a pull selects that fall in [lo, hi) are copied (a month's share of the pull).

    The copy is written through `atomic_output` in resumable blocks: an interrupted pull leaves
    nothing that looks complete, and a re-run fetches only what is missing; a re-run of a
    finished pull of the same request fetches nothing. The URL is recorded (attr
    ``sdofm_source``) and reported without any user or password it holds.
    Returns the number of frames copied per name.
    """
    out = Path(out)
    safe = redact_url(url)
    if cadence is not None and tolerance is None:
        tolerance = cadence / 2
    request = {
        "url": safe,
        "kind": kind,
        "start": str(start),
        "end": str(end),
        "names": list(names),
        "cadence": str(cadence),
        "tolerance": str(tolerance),
        "window": [str(t) for t in window] if window else None,
    }
    counts = _finished(out, request)
    if counts is not None:
        return counts
    src = open_store(url, storage_options)
    with atomic_output(out, resumable=True) as tmp:
        progress = Progress(tmp, request)
        if not progress.resumed and tmp.exists():  # a partial pull of another request
            shutil.rmtree(tmp)
        span = (start, end, cadence, tolerance, window)
        try:
            counts = _pull(src, safe, tmp, kind, span, names, progress, retries)
        except SdofmError as err:  # a message may quote a URL the source's error held
            raise SdofmError(redact_url(str(err))) from None
        with writing(tmp):
            zarr.open_group(tmp, mode="a").update_attributes(
                {"sdofm_pull": {"request": request, "counts": counts}}
            )
            progress.path.unlink(missing_ok=True)
        return counts


def _in_range(src: zarr.Group, kind: str, names: Sequence[str], span: tuple) -> bool:
    """Whether the store has frames of ``names`` anywhere in [start, end) (not just the window)."""
    start, end, _, _, window = span
    if window is None:
        return False  # (asked only when the whole range has none)
    if kind == "eve":
        return len(select_frames(eve_times(src[EVE_GROUP]), start, end)) > 0
    return any(
        len(select_frames(frame_times(src[year][name]), start, end))
        for year in _year_groups(src, start, end)
        for name in names
        if name in src[year]
    )


def _pull_eve(src, url, dst, span, names, retries) -> dict[str, int]:
    start, end, cadence, tolerance, window = span
    if EVE_GROUP not in src:
        msg = f"{url} has no {EVE_GROUP} group: not an SDOML v2 EVE store"
        raise SdofmError(msg)
    g = src[EVE_GROUP]
    missing = [name for name in names if name not in g]
    if missing:
        msg = f"EVE lines {missing} are not in {url}/{EVE_GROUP} (has {sorted(g.array_keys())})"
        raise SdofmError(msg)
    times = with_retries(lambda: eve_times(g), f"{url} EVE times", retries=retries)
    idx = select_frames(
        times, start, end, cadence=cadence, tolerance=tolerance, window=window
    ).index
    # SDOML v2's layout whatever the source wrote: Time as <U23, its codec and chunking.
    arrays = create_eve_arrays(dst, len(idx), names)
    arrays["Time"][:] = format_eve_times(times[idx])
    counts = {"Time": len(idx)}
    for name in names:
        values = with_retries(
            lambda name=name: g[name].get_orthogonal_selection((idx,)) if len(idx) else [],
            f"{url}/{EVE_GROUP}/{name}",
            retries=retries,
        )
        if len(idx):
            arrays[name][:] = np.asarray(values, np.float32)
        arrays[name].update_attributes(g[name].attrs.asdict())
        counts[name] = len(idx)
    return counts


def _plan(src, url, span, names, retries) -> list[tuple]:
    """(year, name, array, selection, per-frame attrs) of every array to copy, selected across
    year groups (the frame nearest a step at New Year may sit in either year's group)."""
    start, end, cadence, tolerance, window = span
    margin = 2 * tolerance if cadence is not None else pd.Timedelta(0)
    lo, hi = window or (start, end)
    years = _year_groups(src, max(start, lo) - margin, min(end, hi) + margin)
    plan = []
    for name in names:
        parts = [src[y][name] for y in years if name in src[y]]  # channels differ by year
        times = [
            with_retries(lambda a=a: frame_times(a), f"{url} {a.path} times", retries=retries)
            for a in parts
        ]
        if not parts:
            continue
        every = times[0].append(times[1:]) if len(times) > 1 else times[0]
        chosen = select_frames(
            every, start, end, cadence=cadence, tolerance=tolerance, window=window
        )
        bounds = np.cumsum([0, *map(len, times)])
        for arr, t, a, b in zip(parts, times, bounds[:-1], bounds[1:], strict=True):
            part = chosen.part(a, b)
            if len(part):
                plan.append((arr.path.split("/")[0], name, arr, part, part.attrs(t)))
    return plan


def _pull(src, url, tmp, kind, span, names, progress, retries) -> dict[str, int]:
    start, end = span[:2]
    with writing(tmp):
        dst = zarr.open_group(tmp, mode="a" if progress.resumed else "w", zarr_format=2)
        dst.update_attributes({**src.attrs.asdict(), "sdofm_source": url})
    if kind == "eve":
        with writing(tmp):
            counts = _pull_eve(src, url, dst, span, names, retries)
    else:
        years = _year_groups(src, start, end)
        absent = [n for n in names if years and not any(n in src[y] for y in years)]
        if absent:
            hint = " (line-of-sight: SDOML v2 holds Bx, By, Bz; ingest hmi.M_720s FITS)"
            msg = f"{kind.upper()} {absent} in no year group of {url}" + (
                hint if HMI_LOS in absent else ""
            )
            shutil.rmtree(tmp)  # nothing to resume: the request itself is wrong
            raise SdofmError(msg)
        plan = _plan(src, url, span, names, retries)
        counts = {}
        total = sum(len(p[3]) for p in plan)  # every array's frames first: the progress total
        with progress_counter(total, f"pull {kind}", "frames") as bar:
            for year, name, arr, part, attrs in plan:
                with writing(tmp):
                    group = dst.require_group(year)
                copy_frames(arr, tmp, group, name, part.index, attrs, progress, bar, retries)
                counts[name] = counts.get(name, 0) + len(part)
    # A month without frames is a gap the build records; a range without any is an error.
    if sum(counts.get(n, 0) for n in names) == 0 and not _in_range(src, kind, names, span):
        shutil.rmtree(tmp)  # nothing to resume: the request itself is empty
        msg = f"no {kind.upper()} data for {list(names)} between {start} and {end} in {url}"
        raise SdofmError(msg)
    return counts
