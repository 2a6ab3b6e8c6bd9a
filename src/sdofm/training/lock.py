"""An exclusive lock on a pretraining output directory, held for the whole run.

Two runs writing the same directory would delete each other's logs and checkpoints. The lock
is ``fcntl.flock`` on ``pretrain.lock`` in that directory: the kernel releases it when its
holder exits, however it exits (``kill -9`` included), so a stale file never blocks a new run.
Light to import (no torch), so `sdofm pretrain` takes it before its slow imports.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sdofm import SdofmError

__all__ = ["launch_rank", "output_lock", "run_lock"]

_held: dict[Path, int] = {}  # locks this process holds, and how many times it entered each


def launch_rank() -> int:
    """This process's global rank as its launcher (srun, torchrun) set it; 0 when alone.

    The variables Lightning reads for ``rank_zero_only``, in its order.
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


@contextmanager
def output_lock(directory: str | Path, name: str = "pretrain.lock") -> Iterator[Path]:
    """Hold ``directory/name`` exclusively, or fail at once naming the holder.

    Re-entrant within a process. The file keeps the holder's pid, host and start time while
    it is held. It is never deleted: a process that opened it just before an unlink would
    lock an orphan and run beside the next one.
    """
    path = (Path(directory) / name).absolute()
    if path in _held:
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "holder unknown"
            msg = (
                f"{path} is locked by another run writing {path.parent} ({holder}): wait for it "
                f"to end, or stop it, before starting another run on the same output"
            )
            raise SdofmError(msg) from None
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}\n".encode(), 0)
        _held[path] = 1
        try:
            yield path
        finally:
            del _held[path]
            os.ftruncate(fd, 0)  # released: nobody holds it
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextmanager
def run_lock(directory: str | Path) -> Iterator[None]:
    """The lock of one run on ``directory``: its rank 0 holds it, the other DDP ranks don't."""
    if launch_rank() != 0:
        yield
        return
    with output_lock(directory):
        yield
