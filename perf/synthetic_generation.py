"""Benchmark: synthetic-Sun generation speed and peak memory at ×1 and ×10 the time range.

Each size runs in a fresh process so peak memory (ru_maxrss) is its own. Generation streams, so
peak memory should barely grow with the time range. With several ``--workers`` counts each
gets its table, then their wall times side by side (peak MB is the main process; the largest
worker's peak is printed beside it). Usage:

    python perf/synthetic_generation.py [--days 36] [--size 64] [--cadence 720] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import tempfile

from scaling import print_scaling, run_child

CHILD = """
import json, resource, sys, time
import pandas as pd
from sdofm.sources.synthetic import SyntheticSun, generate
days, size, cadence, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
workers = int(sys.argv[5])
start = pd.Timestamp("2011-01-01")
sun = SyntheticSun(start=str(start.date()), end=str((start + pd.Timedelta(days=days)).date()),
                   image_size=size, cadence_minutes=cadence)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
generate(sun, out, workers=workers)
seconds = time.perf_counter() - t0
print(json.dumps({"days": days, "frames": len(sun.times), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": base / 1024,
                  "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run(days: int, size: int, cadence: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return run_child(CHILD, str(days), str(size), str(cadence), f"{tmp}/sun", str(workers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=36, help="time range of the ×1 run")
    parser.add_argument("--size", type=int, default=64, help="image size (pixels per side)")
    parser.add_argument("--cadence", type=int, default=720, help="AIA/HMI cadence (minutes)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1], help="frame-rendering processes to compare"
    )
    args = parser.parse_args()
    runs = {}
    for w in args.workers:
        print(f"workers: {w}")
        runs[w] = [run(args.days * k, args.size, args.cadence, w) for k in (1, 10)]
        print_scaling(runs[w], "frames", " (a frame = 9 AIA + 3 HMI images)")
        print("largest worker peak MB x1, x10:", *(f"{r['worker_peak_mb']:.0f}" for r in runs[w]))
    if len(runs) > 1:
        first = args.workers[0]
        print(f"{'range':>6} " + " ".join(f"{f'{w} workers s':>13}" for w in runs), end="")
        print(" " + " ".join(f"{f'{first}/{w} ratio':>11}" for w in args.workers[1:]))
        for k, key in enumerate(("x1", "x10")):
            secs = {w: rows[k]["seconds"] for w, rows in runs.items()}
            print(f"{key:>6} " + " ".join(f"{s:>13.1f}" for s in secs.values()), end="")
            print(" " + " ".join(f"{secs[first] / secs[w]:>11.2f}" for w in args.workers[1:]))


if __name__ == "__main__":
    main()
