"""Progress of long jobs (pull, build, embed): tqdm's counts, rate and ETA.

On a terminal it is tqdm's bar. In a job log (stderr redirected to a file) every update is one
plain line, at most one every ``SDOFM_PROGRESS_SECONDS`` (default 30) plus the first and the
last, so ``tail -f`` on the log follows it and ``grep`` finds it.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from tqdm import tqdm

__all__ = ["progress"]

LINE_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_fmt}, "
    "elapsed {elapsed}, ETA {remaining}"
)


class _Lines:
    """A file for tqdm that turns each redrawn status into one line of its own."""

    def __init__(self, stream: IO[str]):
        self.stream, self.last = stream, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").replace("\x1b[A", "").strip()
        if line and line != self.last:  # tqdm redraws the last status when it closes
            self.stream.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.stream.flush()


def progress(total: int, desc: str, unit: str) -> tqdm:
    """A tqdm counter of ``total`` ``unit`` for ``desc``: a bar on a terminal, lines in a log."""
    stream = sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=stream)
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=_Lines(stream),
        bar_format=LINE_FORMAT,
        mininterval=float(os.environ.get("SDOFM_PROGRESS_SECONDS", "30")),
        dynamic_ncols=False,
    )
