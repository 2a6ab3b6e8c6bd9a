"""Benchmark: synthetic-Sun generation speed and peak memory at ×1 and ×10 the time range.

Each size runs in a fresh process so peak memory (ru_maxrss) is its own. Generation streams, so
peak memory should barely grow with the time range. Usage:

    python perf/synthetic_generation.py [--days 36] [--size 64] [--cadence 720]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
import pandas as pd
from sdofm.sources.synthetic import SyntheticSun, generate
days, size, cadence, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
start = pd.Timestamp("2011-01-01")
sun = SyntheticSun(start=str(start.date()), end=str((start + pd.Timedelta(days=days)).date()),
                   image_size=size, cadence_minutes=cadence)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
generate(sun, out)
seconds = time.perf_counter() - t0
print(json.dumps({"days": days, "frames": len(sun.times), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": base / 1024}))
"""


def run(days: int, size: int, cadence: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(days), str(size), str(cadence), f"{tmp}/sun"],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=36, help="time range of the ×1 run")
    parser.add_argument("--size", type=int, default=64, help="image size (pixels per side)")
    parser.add_argument("--cadence", type=int, default=720, help="AIA/HMI cadence (minutes)")
    args = parser.parse_args()
    rows = [run(args.days * k, args.size, args.cadence) for k in (1, 10)]
    print(f"{'range':>6} {'days':>6} {'frames':>7} {'seconds':>8} {'frames/s':>9} {'peak MB':>8}")
    for k, r in zip((1, 10), rows, strict=True):
        print(
            f"{'x' + str(k):>6} {r['days']:>6} {r['frames']:>7} {r['seconds']:>8.1f} "
            f"{r['frames'] / r['seconds']:>9.1f} {r['peak_rss_mb']:>8.0f}"
        )
    growth = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"] - 1
    speed = [r["frames"] / r["seconds"] for r in rows]
    print(
        f"peak memory growth x1 -> x10: {100 * growth:+.1f}%; frames/s ratio x10/x1: "
        f"{speed[1] / speed[0]:.2f} (a frame = 9 AIA + 3 HMI images)"
    )


if __name__ == "__main__":
    main()
