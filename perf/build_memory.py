"""Benchmark: peak memory and speed of `build_dataset` for one time range and ten times it.

The synthetic Sun and the pull are prepared first; only the build runs in the measured child
process. Streaming keeps peak memory nearly flat. Usage:

    python perf/build_memory.py [--days 36] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from sdofm.sources.sdoml import AIA_CHANNELS, HMI_COMPONENTS, pull_store
from sdofm.sources.synthetic import EVE_LINES, SyntheticSun, generate

CHILD = """
import json, resource, sys, time
from sdofm.dataset.build import build_dataset
params = json.loads(sys.argv[3])
t0 = time.perf_counter()
summary = build_dataset(sys.argv[1], sys.argv[2], params)
print(json.dumps({"seconds": time.perf_counter() - t0, "steps": summary["steps"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(days: int, size: int, tmp: Path) -> dict:
    start = pd.Timestamp("2011-01-01")
    end = start + pd.Timedelta(days=days)
    sun = SyntheticSun(
        start=str(start.date()),
        end=str(end.date()),
        image_size=size,
        eve_cadence_minutes=720,
        goes_cadence_minutes=1440,
    )
    mirror, pulled = tmp / f"sun{days}", tmp / f"pulled{days}"
    generate(sun, mirror)
    for kind, store, names in [
        ("aia", "sdomlv2_small.zarr", AIA_CHANNELS),
        ("hmi", "sdomlv2_hmi.zarr", HMI_COMPONENTS),
        ("eve", "sdomlv2_eve.zarr", list(EVE_LINES)),
    ]:
        pull_store(
            str(mirror / store),
            pulled / f"{kind}.zarr",
            kind=kind,
            start=start,
            end=end,
            names=list(names),
        )
    held_out = start + pd.Timedelta(days=days * 0.8)
    params = {
        "data": {
            "start": str(start),
            "end": str(end),
            "cadence_minutes": 720,
            "tolerance_minutes": 6,
            "aia_channels": list(AIA_CHANNELS),
            "hmi_components": list(HMI_COMPONENTS),
            "eve_lines": list(EVE_LINES),
            "eve_tolerance_minutes": 360,
            "image_size": size,
        },
        "splits": {"val": [], "test": [[str(held_out), str(end)]], "buffer_days": 2},
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(pulled), str(tmp / f"ds{days}.zarr"), json.dumps(params)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=36)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(args.days * k, args.size, Path(tmp)) for k in (1, 10)]
    print(f"{'range':>6} {'steps':>6} {'seconds':>8} {'steps/s':>8} {'peak MB':>8}")
    for k, r in zip((1, 10), rows, strict=True):
        print(
            f"{'x' + str(k):>6} {r['steps']:>6} {r['seconds']:>8.1f} "
            f"{r['steps'] / r['seconds']:>8.1f} {r['peak_rss_mb']:>8.0f}"
        )
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    print(f"peak memory growth x1 -> x10: {100 * growth:+.1f}%")


if __name__ == "__main__":
    main()
