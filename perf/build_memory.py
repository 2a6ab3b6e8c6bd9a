"""Benchmark: peak memory and speed of `build_dataset` for one time range and ten times it.

The synthetic Sun and the pull are prepared first; only the build runs in the measured child
process. Streaming keeps peak memory nearly flat. Usage:

    python perf/build_memory.py [--days 36] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd
from scaling import print_scaling, run_child

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
    return run_child(CHILD, str(pulled), str(tmp / f"ds{days}.zarr"), json.dumps(params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=36)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(args.days * k, args.size, Path(tmp)) for k in (1, 10)]
    print_scaling(rows, "steps")


if __name__ == "__main__":
    main()
