"""The README's real-data configuration on a loopback mirror: per-rule time and peak memory.

A 512² synthetic Sun in the exact SDOML v2 layout is served over HTTP on 127.0.0.1; the
README's "Real data" YAML (only its URL changed) plus tests/configs/realdata_ci.yaml (a short
window, 64² training) runs with Snakemake; each rule's benchmark TSV gives its wall time and
peak RSS. ``--days`` sets the window; ``--double`` runs it again with twice the window.

    python perf/realdata_run.py --days 24 --double [--target all]
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sdofm.sources.synthetic import SyntheticSun  # noqa: E402
from sdofm.sources.synthetic.mirror import (  # noqa: E402
    real_format_events,
    serve,
    synthetic_mirror,
)

CI = ROOT / "tests" / "configs" / "realdata_ci.yaml"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def readme_config(url: str) -> dict:
    """The README's "Real data" YAML block with its URL replaced by ``url``."""
    text = (ROOT / "README.md").read_text()
    block = text.split("### Real data", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    config = yaml.safe_load(block)
    config["sources"]["sdoml"] = url
    return config


def ci_config(days: int) -> dict:
    """tests/configs/realdata_ci.yaml with the window set to ``days`` days, and the tiny
    configuration's pretraining, benchmark and protocol settings (sized for a CPU)."""
    ci = yaml.safe_load(CI.read_text())
    tiny = yaml.safe_load(TINY.read_text())
    start = pd.Timestamp(ci["data"]["start"])
    end = start + pd.Timedelta(days=days)
    ci["data"]["end"] = f"{end:%Y-%m-%d}"
    at = lambda fraction: f"{start + (end - start) * fraction:%Y-%m-%dT%H:%M}"  # noqa: E731
    # Training on the first half, validation on the next sixth, test on the last quarter.
    ci["splits"] = {
        "val": [[at(1 / 2), at(2 / 3)]],
        "test": [[at(3 / 4), at(1)]],
        "buffer_days": ci["splits"]["buffer_days"],
    }
    ci["pretrain"] = copy.deepcopy(tiny["pretrain"])
    ci["benchmarks"] = copy.deepcopy(tiny["benchmarks"])
    # The protocol's buffer is the store's: a short window leaves no room for 60 days.
    ci["protocol"] = {
        **tiny["protocol"],
        "block_days": 1,
        "buffer_days": ci["splits"]["buffer_days"],
    }
    return ci


def sun_for(ci: dict) -> SyntheticSun:
    """The synthetic Sun behind the mirror: the run's window at 512², an active Sun."""
    return SyntheticSun(
        seed=7,
        start=ci["data"]["start"],
        end=ci["data"]["end"],
        cadence_minutes=ci["data"]["cadence_minutes"],
        eve_cadence_minutes=10,
        goes_cadence_minutes=1,
        image_size=512,
        regions_per_day=1.0,
        megsa_end="2014-05-26",
    )


def prepare(work: Path, days: int) -> tuple[Path, Path, dict]:
    """Mirror, event files and the two config files under ``work``; returns (served folder,
    project folder, CI config)."""
    ci = ci_config(days)
    served, project = work / "served", work / "project"
    mirror = synthetic_mirror(sun_for(ci), served, work / "mirror")
    events = readme_config("http://x/")["sources"]["events"]
    real_format_events(mirror, project, events)
    return served, project, ci


def run(work: Path, served: Path, project: Path, ci: dict, targets: list[str]) -> pd.DataFrame:
    """Snakemake on README + CI configs with the mirror served; one row per job."""
    with serve(served) as (url, handler):
        (project / "real.yaml").write_text(yaml.safe_dump(readme_config(url)))
        (project / "ci.yaml").write_text(yaml.safe_dump(ci))
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(ROOT / "workflow" / "Snakefile"),
            "--directory",
            str(work / "run"),
            "--cores",
            "2",
            *targets,
            "--configfile",  # last: it takes every path that follows
            str(project / "real.yaml"),
            str(project / "ci.yaml"),
        ]
        env_path = f"{Path(sys.executable).parent}:" + os.environ["PATH"]
        started = time.perf_counter()
        done = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, "PATH": env_path}
        )
        wall = time.perf_counter() - started
        if done.returncode:
            raise SystemExit(done.stderr[-4000:])
        requests = handler.requests
    rows = []
    for tsv in sorted((work / "run" / "results" / "benchmarks").rglob("*.tsv")):
        b = pd.read_csv(tsv, sep="\t").iloc[0]
        rows.append(
            {
                "job": str(tsv.relative_to(work / "run" / "results" / "benchmarks"))[:-4],
                "seconds": b["s"],
                "max_rss_mb": b["max_rss"],
            }
        )
    table = pd.DataFrame(rows)
    table.attrs.update(wall=wall, requests=requests)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=24)
    parser.add_argument("--double", action="store_true", help="also run twice the window")
    parser.add_argument("--target", nargs="+", default=["all"], help="snakemake targets")
    parser.add_argument("--keep", help="work in this folder and keep it (mirrors are reused)")
    args = parser.parse_args()
    tables = {}
    for days in [args.days, 2 * args.days] if args.double else [args.days]:
        with tempfile.TemporaryDirectory(prefix="sdofm-realdata-") as tmp:
            work = Path(args.keep) / f"{days}d" if args.keep else Path(tmp)
            started = time.perf_counter()
            if (work / "served" / "sdomlv2_eve.zarr").exists():  # a kept mirror
                served, project, ci = work / "served", work / "project", ci_config(days)
            else:
                served, project, ci = prepare(work, days)
            print(f"{days} d: mirror and event files in {time.perf_counter() - started:.0f} s")
            table = run(work, served, project, ci, args.target)
            print(
                f"{days} d: snakemake {' '.join(args.target)} in {table.attrs['wall']:.0f} s, "
                f"{table.attrs['requests']} HTTP requests to the mirror"
            )
            tables[days] = table.set_index("job")
    joined = pd.concat(tables, axis=1)
    if len(tables) == 2:
        a, b = tables
        joined[("ratio", "seconds")] = joined[(b, "seconds")] / joined[(a, "seconds")]
        joined[("ratio", "max_rss_mb")] = joined[(b, "max_rss_mb")] / joined[(a, "max_rss_mb")]
    print(joined.round(2).to_string())


if __name__ == "__main__":
    main()
