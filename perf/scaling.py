"""Shared by the x1-vs-x10 benchmarks: run a measured child process, print the comparison."""

from __future__ import annotations

import json
import subprocess
import sys


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh interpreter (its own peak memory); return its last JSON line."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_scaling(rows: list[dict], unit: str, note: str = "") -> None:
    """A table of the x1 and x10 runs (``rows`` carry ``unit``, seconds, peak_rss_mb)."""
    print(f"{'range':>6} {unit:>7} {'seconds':>8} {unit + '/s':>9} {'peak MB':>8}")
    for k, r in zip((1, 10), rows, strict=True):
        print(
            f"{'x' + str(k):>6} {r[unit]:>7} {r['seconds']:>8.1f} "
            f"{r[unit] / r['seconds']:>9.1f} {r['peak_rss_mb']:>8.0f}"
        )
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    speed = [r[unit] / r["seconds"] for r in rows]
    print(
        f"peak memory growth x1 -> x10: {100 * growth:+.1f}%; {unit}/s ratio x10/x1: "
        f"{speed[1] / speed[0]:.2f}{note}"
    )
