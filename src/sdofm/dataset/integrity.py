"""Chunk integrity: every chunk a reader needs is there and whole, or one error line names it.

Reads go through zarr's own path with the store wrapped in `CheckedStore`, which looks at each
chunk of a watched array as zarr fetches it, before any codec sees it: a missing chunk of a row
that must exist, a size that differs from the store's chunk manifest, or a Blosc header that
announces more bytes than the file holds (numcodecs would read past the buffer: garbage, a
``blosc decompression: -1`` naming nothing, or a segfault) becomes a `ChunkError` naming the
store, the chunk key and the time of its rows. The ML-ready store carries the manifest
(``chunk_bytes``, ``chunk_crc32`` per time step, written by the build); `verify_dataset` checks
every chunk against it, `check_chunks` the cheap part (presence and size) when a store is opened.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.storage import LocalStore, WrapperStore

from sdofm import SdofmError
from sdofm.io import settle_zarr_writes

__all__ = [
    "CheckedStore",
    "ChunkError",
    "check_chunks",
    "chunk_name",
    "file_manifest",
    "open_checked",
    "time_labels",
    "verify_dataset",
    "write_errors",
]

_METADATA = (".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json")
_BLOSC_HEADER = 16


class ChunkError(SdofmError):
    """A chunk that is missing, truncated or undecodable."""


def time_labels(times: np.ndarray) -> np.ndarray:
    """Row labels for messages: ISO times to the second (other coordinates as they are)."""
    if np.issubdtype(times.dtype, np.datetime64):
        return np.datetime_as_string(times, unit="s")
    return times.astype(str)


@dataclass
class _Watched:
    """What the reader knows about one array: per-row time labels, the rows that must have
    their chunk, and, where the store has a manifest, each row's chunk size."""

    rows_per_chunk: int
    nbytes: int  # bytes of one decoded chunk
    blosc: bool
    plain: bool  # stored without a compressor
    labels: Sequence[Any]
    required: np.ndarray | None
    sizes: np.ndarray | None

    def rows(self, index: int) -> slice:
        lo = index * self.rows_per_chunk
        return slice(lo, min(lo + self.rows_per_chunk, len(self.labels)))

    def describe(self, index: int) -> str:
        labels = [str(t) for t in self.labels[self.rows(index)]]
        if len(labels) == 1:
            return f"time {labels[0]}"
        return f"times {labels[0]} to {labels[-1]}" if labels else "beyond the last row"

    def problem(self, index: int, data: Any) -> str | None:
        """Why the bytes of chunk ``index`` cannot be decoded as they should, or None."""
        if data is None:
            need = self.required is None or bool(self.required[self.rows(index)].any())
            return "is missing" if need else None
        size = len(data)
        if self.sizes is not None and self.rows_per_chunk == 1 and index < len(self.sizes):
            expected = int(self.sizes[index])
            if expected and size != expected:
                return f"has {size} bytes, the store's chunk manifest {expected}"
        if self.plain and size != self.nbytes:
            return f"has {size} bytes, not the {self.nbytes} of an uncompressed chunk"
        if self.blosc:
            if size < _BLOSC_HEADER:
                return f"is truncated ({size} bytes, less than a Blosc header)"
            # Blosc 1 header: version, versionlz, flags, typesize, then uint32 LE nbytes,
            # blocksize, cbytes (c-blosc's README_HEADER.rst).
            head = data.as_numpy_array()[:_BLOSC_HEADER].tobytes()
            nbytes, _, cbytes = struct.unpack_from("<III", head, 4)
            if cbytes != size:
                return f"is truncated ({size} of the {cbytes} bytes its Blosc header gives)"
            if nbytes != self.nbytes:
                return f"decodes to {nbytes} bytes, not the {self.nbytes} of a chunk"
        return None


class CheckedStore(WrapperStore):
    """A zarr store that refuses missing or truncated chunks of the arrays it watches.

    ``name`` (the store's path, for messages) is given once; `watch` registers an array.
    Arrays not watched (small index variables) read as zarr reads them.
    """

    def __init__(self, store: Any, name: str = "", watched: dict | None = None):
        super().__init__(store)
        self.name = name or str(getattr(store, "root", store))
        self.watched: dict[str, _Watched] = {} if watched is None else watched

    def _with_store(self, store: Any) -> CheckedStore:
        return type(self)(store, self.name, self.watched)  # shares the registrations

    def watch(
        self,
        array: zarr.Array,
        labels: Sequence[Any],
        *,
        required: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        """Check the chunks of ``array`` (a zarr format 2 array read through this store).

        ``labels`` name its rows (times) in messages; ``required`` (bool per row, default all)
        says which rows must have their chunk; ``sizes`` is the manifest's bytes per chunk.
        """
        codec = array.metadata.compressor if array.metadata.zarr_format == 2 else None
        self.watched[array.path] = _Watched(
            rows_per_chunk=int(array.chunks[0]),
            nbytes=int(np.prod(array.chunks)) * array.dtype.itemsize,
            blosc=codec is not None and codec.codec_id == "blosc",
            plain=array.metadata.zarr_format == 2 and codec is None and not array.metadata.filters,
            labels=np.asarray(labels),
            required=None if required is None else np.asarray(required, bool),
            sizes=None if sizes is None else np.asarray(sizes),
        )

    def _find(self, key: str) -> tuple[str, int] | None:
        """(array path, index of the chunk along the first axis) of a watched chunk key."""
        if key.endswith(_METADATA):
            return None
        for path in self.watched:
            if key.startswith(f"{path}/"):
                coords = key[len(path) + 1 :].replace("/", ".").split(".")
                if all(c.isdigit() for c in coords):
                    return path, int(coords[0])
        return None

    def describe(self, path: str, index: int) -> str:
        """``<store>: chunk <key> (<time>)`` for messages about chunk ``index`` of ``path``."""
        w = self.watched.get(path)
        where = w.describe(index) if w else f"row block {index}"
        return f"{self.name}: chunk {path}/{index}.* ({where})"

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        data = await self._store.get(key, prototype, byte_range)
        found = self._find(key) if byte_range is None else None
        if found is not None:
            path, index = found
            why = self.watched[path].problem(index, data)
            if why:
                where = self.watched[path].describe(index)
                msg = f"{self.name}: chunk {key} ({where}) {why}: rebuild or re-pull it"
                raise ChunkError(msg)
        return data

    async def _get_many(self, requests):  # noqa: ANN001 - zarr's own signature
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)


def open_checked(path: str | Path) -> CheckedStore:
    """A read-only `CheckedStore` over the local store at ``path``."""
    return CheckedStore(LocalStore(str(path), read_only=True), str(path))


def chunk_name(array: zarr.Array, row: int) -> str:
    """The file name of the chunk holding ``row`` of a (time, ...) array chunked one row each."""
    sep = getattr(array.metadata, "dimension_separator", ".") or "."
    return sep.join([str(row // array.chunks[0])] + ["0"] * (array.ndim - 1))


def file_manifest(array_dir: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, CRC-32) of each chunk file ``names`` in ``array_dir`` (0, 0 where absent)."""
    sizes = np.zeros(len(names), np.int64)
    crcs = np.zeros(len(names), np.uint32)
    for k, name in enumerate(names):
        try:
            raw = (array_dir / name).read_bytes()
        except FileNotFoundError:
            continue
        sizes[k], crcs[k] = len(raw), zlib.crc32(raw)
    return sizes, crcs


def check_chunks(path: Path, ds: xr.Dataset, *, crc: bool = False) -> int:
    """Every valid row of the ML-ready store ``path`` has its ``images`` chunk, of the size (and
    with ``crc``, the CRC-32) its manifest records; else a `ChunkError` naming the first bad
    one. Presence and size come from one directory listing (cheap enough for every open).
    Returns the number of chunks checked."""
    array_dir = path / "images"
    array = zarr.open_array(array_dir, mode="r")
    rows = np.flatnonzero(ds["valid"].values)
    names = [chunk_name(array, int(r)) for r in rows]
    with os.scandir(array_dir) as entries:
        present = {e.name: e for e in entries}
    sizes = ds["chunk_bytes"].values if "chunk_bytes" in ds else None
    crcs = ds["chunk_crc32"].values if crc and "chunk_crc32" in ds else None
    bad = []
    for row, name in zip(rows, names, strict=True):
        entry = present.get(name)
        if entry is None:
            bad.append((row, name, "is missing"))
        elif sizes is not None and entry.stat().st_size != sizes[row]:
            why = f"has {entry.stat().st_size} bytes, the store's chunk manifest {sizes[row]}"
            bad.append((row, name, why))
        elif crcs is not None and zlib.crc32(Path(entry.path).read_bytes()) != crcs[row]:
            bad.append((row, name, "does not match the CRC-32 of its chunk manifest"))
    if bad:
        row, name, why = bad[0]
        more = f" ({len(bad)} valid rows have a bad chunk)" if len(bad) > 1 else ""
        time = time_labels(ds["time"].values[row : row + 1])[0]
        msg = f"{path}: chunk images/{name} (time {time}) {why}{more}: rebuild the data set"
        raise ChunkError(msg)
    return len(rows)


def verify_dataset(path: str | Path) -> dict[str, Any]:
    """Check every chunk of a built store against its manifest (CRC-32) and decode it.

    One line (`ChunkError`) names the first bad chunk; returns what was checked.
    """
    from sdofm.dataset.loader import open_dataset  # the open already checks presence and size

    path = Path(path)
    ds = open_dataset(path)
    n = check_chunks(path, ds, crc=True)
    images = ds["images"].variable
    for row in np.flatnonzero(ds["valid"].values):
        try:
            np.asarray(images[int(row)].values)
        except (RuntimeError, ValueError) as err:  # a codec's error: the payload is corrupt
            time = time_labels(ds["time"].values[row : row + 1])[0]
            msg = f"{path}: chunk images/{row}.* (time {time}) cannot be decoded: {err}"
            raise ChunkError(msg) from err
    return {"dataset": str(path), "chunks": n, "manifest": "chunk_crc32" in ds}


@contextmanager
def write_errors(out: str | Path) -> Iterator[None]:
    """Turn a full disk (or quota, or read-only file system) while writing ``out`` into one
    `SdofmError` line naming the path, instead of a traceback whose last line is a thread
    pool's complaint. The chunk writes zarr still has in flight are waited for first (as the
    pull does), so the partial output `atomic_output` then removes stays removed."""
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        settle_zarr_writes()
        where = f" ({err.filename})" if err.filename else ""
        msg = f"cannot write {out}{where}: {os.strerror(err.errno)}; free space and rerun"
        raise SdofmError(msg) from err
