"""Small I/O helpers shared by every stage."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "file_sha256", "settle_zarr_writes"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_output(out: str | Path, *, resumable: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path to write ``out`` into; rename it to ``out`` on success.

    A crash or kill leaves at most a ``*.partial.*`` sibling, never something named ``out`` that
    Snakemake or a reader would take as complete. Works for files and directories (Zarr stores).
    With ``resumable``, a partial output of an earlier attempt is handed back (and kept when this
    attempt fails too), so the writer can carry on where it stopped.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.stem}.partial{out.suffix}")  # keeps the suffix readers check
    if not resumable:
        _remove(tmp)
    try:
        yield tmp
    except BaseException:
        if not resumable:
            _remove(tmp)
        raise
    _remove(out)
    tmp.rename(out)


def file_sha256(path: str | Path, *, length: int = 16) -> str:
    """Hex SHA-256 of a file (shortened), used to tie embeddings and results to a checkpoint."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def settle_zarr_writes() -> None:
    """Wait for every task still running on zarr's I/O loop (chunk writes in flight).

    zarr writes the chunks of one assignment concurrently; when one fails the others carry on.
    Called before reporting a failed write, so nothing changes on disk after the error (a
    cleanup or a resume then sees every file that will ever be written).
    """
    import asyncio

    from zarr.core.sync import sync

    async def others() -> None:
        me = asyncio.current_task()
        await asyncio.gather(
            *(t for t in asyncio.all_tasks() if t is not me), return_exceptions=True
        )

    sync(others())
