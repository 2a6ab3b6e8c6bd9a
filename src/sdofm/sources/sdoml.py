"""Read, subset and write stores in the SDOML v2 layout (AIA, HMI and EVE)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import zarr

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.progress import progress as progress_counter
from sdofm.sources.sdoml_layout import (
    COMPRESSOR,
    EVE_GROUP,
    FRAME_CHUNK,
    create_eve_arrays,
    format_eve_times,
)

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
            msg = f"no SDOML v2 store at {url}: the path does not exist"
            raise SdofmError(msg)
    elif url.startswith(("http://", "https://")) and opts:
        # 'anon' (no credentials, for s3/gcs) means nothing to HTTP, which would pass it on
        # to every request: a mirror of the public bucket takes the same options.
        opts = {k: v for k, v in opts.items() if k != "anon"} or None
    try:
        return zarr.open_group(url, mode="r", storage_options=opts)
    except Exception as err:  # fsspec/zarr raise many types for a missing store
        msg = f"cannot open SDOML v2 store at {url}: {type(err).__name__}: {err}"
        raise SdofmError(msg) from None


def parse_tobs(values: Iterable[str]) -> pd.DatetimeIndex:
    """Parse AIA (`2011-01-01T00:00:07.84Z`, UTC) and HMI (`2011.01.01_00:00:34_TAI`) T_OBS.

    HMI times are TAI, ahead of UTC by the leap seconds so far (34 s in 2011, 37 s since 2017);
    astropy converts them to UTC so both instruments align on one clock.
    """
    texts = [str(v) for v in values]
    utc = [pd.Timestamp(t.rstrip("Z")) if not t.endswith("_TAI") else None for t in texts]
    tai = [i for i, t in enumerate(texts) if t.endswith("_TAI")]
    if tai:
        from astropy.time import Time

        iso = []
        for i in tai:
            date, clock = texts[i][:-4].split("_")
            iso.append(f"{date.replace('.', '-')}T{clock}")
        converted = Time(iso, format="isot", scale="tai").utc.to_datetime()
        for i, t in zip(tai, np.atleast_1d(converted), strict=True):
            utc[i] = pd.Timestamp(t)
    return pd.DatetimeIndex(utc)


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


def _select(times: pd.DatetimeIndex, start, end, cadence: pd.Timedelta | None) -> np.ndarray:
    """Indices of frames in [start, end), thinned to at most one per cadence bin."""
    inside = np.flatnonzero((times >= start) & (times < end))
    if cadence is None or len(inside) == 0:
        return inside
    bins = ((times[inside] - start) // cadence).to_numpy()
    _, first = np.unique(bins, return_index=True)
    return inside[first]


RETRIES = 5
BACKOFF_SECONDS = 1.0


def with_retries(
    read: Callable[[], Any], what: str, *, retries: int | None = None, backoff: float | None = None
) -> Any:
    """Call ``read``, retrying transient I/O errors with exponential backoff (1, 2, 4 … s).

    A missing object (FileNotFoundError, e.g. HTTP 404) is not transient and is raised at once.
    """
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_SECONDS if backoff is None else backoff
    for attempt in range(retries + 1):
        try:
            return read()
        except FileNotFoundError:
            raise
        except (OSError, aiohttp.ClientError, TimeoutError) as err:
            if attempt == retries:
                msg = f"reading {what} failed after {retries + 1} attempts: {err}"
                raise SdofmError(msg) from None
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


class _Progress:
    """Which blocks of an interrupted pull are already copied (a JSON file in the partial store)."""

    def __init__(self, store: Path, request: dict[str, Any]):
        self.path = store / ".sdofm_pull.json"
        self.request = request
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        same = saved.get("request") == request
        self.done: set[str] = set(saved.get("done", [])) if same else set()
        self.resumed = bool(self.done)

    def mark(self, key: str) -> None:
        self.done.add(key)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"request": self.request, "done": sorted(self.done)}))
        os.replace(tmp, self.path)


def _copy_array(
    src: zarr.Array,
    dst_group: zarr.Group,
    name: str,
    idx: np.ndarray,
    progress: _Progress,
    counter: Any,
) -> None:
    shape = (len(idx), *src.shape[1:])
    key = f"{dst_group.path}/{name}"
    if name in dst_group and dst_group[name].shape == shape and progress.resumed:
        dst = dst_group[name]  # carrying on after an interruption
    else:
        dst = dst_group.create_array(
            name,
            shape=shape,
            chunks=(FRAME_CHUNK, *src.shape[1:]),
            dtype=src.dtype,
            compressors=COMPRESSOR,
            overwrite=True,
        )
    # Blocks of 60 frames (whole 15-frame chunks) bound memory; each is fetched with retries
    # and recorded, so a re-run after an interruption fetches only the missing blocks.
    for lo in range(0, len(idx), 60):
        block = idx[lo : lo + 60]
        if f"{key}:{lo}" not in progress.done:
            dst[lo : lo + len(block)] = with_retries(
                lambda block=block: src.get_orthogonal_selection((block,)), f"{src.path} frames"
            )
            progress.mark(f"{key}:{lo}")
        counter.update(len(block))
    attrs = {}
    for key, value in src.attrs.asdict().items():
        if isinstance(value, list) and len(value) == src.shape[0]:
            attrs[key] = [value[i] for i in idx]
        else:
            attrs[key] = value
    dst.update_attributes(attrs)


def pull_store(
    url: str,
    out: str | Path,
    *,
    kind: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    names: Sequence[str],
    cadence: pd.Timedelta | None = None,
    storage_options: dict[str, Any] | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> dict[str, int]:
    """Copy a time range and a set of channels of an SDOML v2 store to ``out``.

    ``kind`` is ``"aia"``/``"hmi"`` (year groups of frame arrays, names are channels) or ``"eve"``
    (the MEGS-A group, names are lines). The copy keeps the SDOML v2 layout and attrs. It is
    written through `atomic_output`, so an interrupted pull leaves nothing that looks complete.
    With ``window`` only the frames a pull of [start, end) selects that fall in [lo, hi) are
    copied (a month's share of the pull: the cadence bins still count from ``start``).
    Returns the number of frames copied per name.
    """
    src = open_store(url, storage_options)
    request = {
        "url": url,
        "kind": kind,
        "start": str(start),
        "end": str(end),
        "names": list(names),
        "cadence": str(cadence),
        "window": [str(t) for t in window] if window else None,
    }
    with atomic_output(out, resumable=True) as tmp:
        progress = _Progress(tmp, request)
        if not progress.resumed and tmp.exists():  # a partial pull of another request
            shutil.rmtree(tmp)
        span = (start, end, window or (start, end))
        counts = _pull(src, url, tmp, kind, span, names, cadence, progress)
        progress.path.unlink(missing_ok=True)
        return counts


def _frames_in(times: pd.DatetimeIndex, span: tuple, cadence: pd.Timedelta | None) -> np.ndarray:
    """The frames a pull of [start, end) at ``cadence`` copies, restricted to [lo, hi)."""
    start, end, (lo, hi) = span
    idx = _select(times, start, end, cadence)
    return idx[(times[idx] >= lo) & (times[idx] < hi)]


def _in_range(src: zarr.Group, kind: str, names: Sequence[str], span: tuple) -> bool:
    """Whether the store has frames of ``names`` anywhere in [start, end) (not just the window)."""
    start, end, window = span
    if window == (start, end):
        return False  # (asked only when the window, here the whole range, has none)
    if kind == "eve":
        return len(_select(eve_times(src[EVE_GROUP]), start, end, None)) > 0
    return any(
        len(_select(frame_times(src[year][name]), start, end, None))
        for year in _year_groups(src, start, end)
        for name in names
        if name in src[year]
    )


def _pull(src, url, tmp, kind, span, names, cadence, progress) -> dict[str, int]:
    start, end, (lo, hi) = span
    dst = zarr.open_group(tmp, mode="a" if progress.resumed else "w", zarr_format=2)
    dst.update_attributes({**src.attrs.asdict(), "sdofm_source": url})
    counts: dict[str, int] = {}
    if kind == "eve":
        if EVE_GROUP not in src:
            msg = f"{url} has no {EVE_GROUP} group: not an SDOML v2 EVE store"
            raise SdofmError(msg)
        g = src[EVE_GROUP]
        missing = [name for name in names if name not in g]
        if missing:
            msg = f"EVE lines {missing} are not in {url}/{EVE_GROUP} (has {sorted(g.array_keys())})"
            raise SdofmError(msg)
        times = with_retries(lambda: eve_times(g), f"{url} EVE times")
        idx = _frames_in(times, span, cadence)
        # SDOML v2's layout whatever the source wrote: Time as <U23, its codec and chunking.
        arrays = create_eve_arrays(dst, len(idx), names)
        arrays["Time"][:] = format_eve_times(times[idx])
        counts["Time"] = len(idx)
        for name in names:
            values = with_retries(
                lambda name=name: g[name].get_orthogonal_selection((idx,)) if len(idx) else [],
                f"{url}/{EVE_GROUP}/{name}",
            )
            if len(idx):
                arrays[name][:] = np.asarray(values, np.float32)
            arrays[name].update_attributes(g[name].attrs.asdict())
            counts[name] = len(idx)
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
        plan = []  # every array's frames first, so the progress lines know the total
        for year in _year_groups(src, max(start, lo), min(end, hi)):
            dst.require_group(year)
            for name in names:
                if name not in src[year]:
                    continue  # channels differ between years; alignment records the gap
                arr = src[year][name]
                times = with_retries(lambda arr=arr: frame_times(arr), f"{url} {arr.path} times")
                idx = _frames_in(times, span, cadence)
                if len(idx):
                    plan.append((year, name, arr, idx))
        with progress_counter(sum(len(p[3]) for p in plan), f"pull {kind}", "frames") as bar:
            for year, name, arr, idx in plan:
                _copy_array(arr, dst[year], name, idx, progress, bar)
                counts[name] = counts.get(name, 0) + len(idx)
    # A month without frames is a gap the build records; a range without any is an error.
    if sum(counts.get(n, 0) for n in names) == 0 and not _in_range(src, kind, names, span):
        shutil.rmtree(tmp)  # nothing to resume: the request itself is empty
        msg = f"no {kind.upper()} data for {list(names)} between {start} and {end} in {url}"
        raise SdofmError(msg)
    return counts
