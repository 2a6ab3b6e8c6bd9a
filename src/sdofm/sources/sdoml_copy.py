"""Copying frames between Zarr stores: retried reads, resumable blocks, clear write errors."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import zarr

from sdofm import SdofmError
from sdofm.io import settle_zarr_writes
from sdofm.sources.credentials import redact_url
from sdofm.sources.sdoml_layout import COMPRESSOR, FRAME_CHUNK

__all__ = ["BACKOFF_SECONDS", "RETRIES", "Progress", "copy_frames", "with_retries", "writing"]

RETRIES = 5
BACKOFF_SECONDS = 1.0
BLOCK = 60  # frames per fetch: whole 15-frame chunks, bounded memory, one progress entry


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
                raise SdofmError(redact_url(msg)) from None
            time.sleep(backoff * 2**attempt)
    raise AssertionError("unreachable")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write under ``path`` (a full disk, no permission) into one clear line.

    zarr writes the chunks of one assignment concurrently and, when one fails, the others carry
    on in its I/O threads: they are waited for first, so nothing changes on disk after the error
    (a cleanup or a resume then sees every file that will ever be written). A missing file is
    how fsspec reports a missing source object (HTTP 404): it passes through unchanged.
    """
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as err:
        settle_zarr_writes()
        where = err.filename or path
        if err.errno == errno.ENOSPC:
            free = shutil.disk_usage(path if path.exists() else path.parent).free / 2**20
            msg = (
                f"cannot write {where}: no space left on device ({free:.0f} MiB free); "
                "free some space and re-run: the pull resumes where it stopped"
            )
        else:
            msg = f"cannot write {where}: {err.strerror or err}"
        raise SdofmError(msg) from None


class Progress:
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


def copy_frames(
    src: zarr.Array,
    root: Path,
    dst_group: zarr.Group,
    name: str,
    idx: np.ndarray,
    extra_attrs: dict[str, list],
    progress: Progress,
    counter: Any,
    retries: int | None = None,
) -> None:
    """Copy frames ``idx`` of ``src`` to ``dst_group[name]`` (of the store at ``root``) in blocks,
    each fetched with retries and recorded, so a re-run after an outage fetches only the missing
    blocks."""
    shape = (len(idx), *src.shape[1:])
    key = f"{dst_group.path}/{name}"
    where = root / key
    with writing(where):
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
    for lo in range(0, len(idx), BLOCK):
        block = idx[lo : lo + BLOCK]
        if f"{key}:{lo}" not in progress.done:
            values = with_retries(
                lambda block=block: src.get_orthogonal_selection((block,)),
                f"{src.path} frames",
                retries=retries,
            )
            with writing(where):
                dst[lo : lo + len(block)] = values
                progress.mark(f"{key}:{lo}")
        counter.update(len(block))
    attrs = {}
    for k, value in src.attrs.asdict().items():
        if isinstance(value, list) and len(value) == src.shape[0]:
            attrs[k] = [value[i] for i in idx]
        else:
            attrs[k] = value
    with writing(where):
        dst.update_attributes(attrs | extra_attrs)
