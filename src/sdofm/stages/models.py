"""The model and evaluation stages of the `sdofm` command: pretrain, embed, similar, map,
benchmark/score, sweep, report.

Each takes the parsed arguments and the stage's settings and returns the summary the command
prints; the imports are inside, so `sdofm --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from sdofm import SdofmError

__all__ = ["benchmark", "embed", "map", "pretrain", "report", "similar", "sweep"]


def pretrain(args, params):
    import os

    from sdofm.training.layout import watch_requeue_signals
    from sdofm.training.lock import run_lock

    if "SLURM_JOB_ID" in os.environ:
        watch_requeue_signals()  # before the slow imports: SLURM may warn during start-up
    with run_lock(Path(args.out).parent):  # also before them: a second run stops at once
        from sdofm.training.pretrain import pretrain

        return pretrain(args.dataset, args.out, params)


def embed(args, params):
    from sdofm.embeddings.extract import extract_embeddings, merge_embeddings

    if args.parts:
        return merge_embeddings(args.parts, args.dataset, args.out)
    if not args.checkpoint:
        msg = "give the pretrained backbone with --checkpoint"
        raise SdofmError(msg)
    return extract_embeddings(args.dataset, args.checkpoint, args.out, params, period=args.period)


def similar(args, params):
    from sdofm.embeddings.explore import similar_times

    found = similar_times(args.embeddings, args.time, k=args.k, exclude_hours=args.exclude_hours)
    print(f"{'time (UTC)':<16}  {'cosine_distance':>15}  split")
    for row in found.itertuples():
        print(f"{row.time:%Y-%m-%dT%H:%M}  {row.cosine_distance:>15.4f}  {row.split}")
    return {"query": found.attrs["query"], "found": len(found)}


def map(args, params):
    from sdofm.embeddings.explore import embedding_map

    return embedding_map(args.embeddings, args.dataset, args.png, args.csv)


def benchmark(args, params):
    """All arms of a task and their scores (no --group); or one group of its arms, saved."""
    import numpy as np

    from sdofm.benchmarks import runner as rn
    from sdofm.benchmarks import task_class
    from sdofm.benchmarks.arm_groups import BASELINES, ArmGroup, write_group
    from sdofm.config import validate_block

    task_cls = task_class(args.task)
    params = dict(params)
    protocol = validate_block(params.pop("protocol", {}), "protocol")
    params = validate_block(params, "benchmarks", args.task) | {"protocol": protocol}
    backbone = args.command == "benchmark" and args.group != BASELINES
    if backbone and not (args.embeddings and args.checkpoint):
        msg = f"give --embeddings and --checkpoint (only --group {BASELINES} needs no backbone)"
        raise SdofmError(msg)
    inputs = rn.TaskInputs(
        Path(args.dataset),
        Path(args.embeddings) if backbone else None,
        Path(args.checkpoint) if backbone else None,
        Path(args.events) if args.events else None,
        Path(args.truth) if args.truth else None,
    )
    if args.group is None:
        result = rn.run_task(task_cls, inputs, args.out, params)
    elif args.command == "score":
        from sdofm.benchmarks.arm_groups import read_group

        task, samples = rn.prepare(task_cls, inputs, params)
        groups = [read_group(path) for path in args.group]
        result = rn.score_groups(task, samples, groups, args.out)
    else:
        try:
            task, samples = rn.prepare(task_cls, inputs, params)
        except rn.NotApplicable as err:  # scored without this run, the reason in metrics.json
            empty = np.array([], str)
            write_group(
                ArmGroup(args.group, empty, empty, {}, {}, meta={"not_applicable": str(err)}),
                args.out,
            )
            return {"group": args.group, "not_applicable": str(err)}
        if backbone:
            group = rn.fm_group(task, samples, args.group)
        else:
            group = rn.baseline_group(task, samples)
        write_group(group, args.out)
        return {"group": group.name, "arms": sorted(group.arms)}
    metric = result["headline"]["metric"]
    return {
        "headline": result["headline"]["label"],
        **{arm: v["metrics"][metric]["value"] for arm, v in result["arms"].items()},
        "verdicts": result["verdicts"],
    }


def sweep(args, params):
    from snakemake.utils import Paramspace

    from sdofm.io import atomic_output
    from sdofm.sweep import PROBE, sweep_points, sweep_table

    points = sweep_points(params)
    runs = [r for r in args.runs.split(",") if r]
    if runs != list(Paramspace(points, filename_params="*").instance_patterns):
        msg = f"--runs {args.runs!r} are not the runs of the sweep's points"
        raise SdofmError(msg)
    table = sweep_table(points, runs, params.get("select", PROBE), Path(args.results))
    with atomic_output(args.out) as tmp:
        table.to_csv(tmp, index=False)
    return {"chosen": table.loc[table["chosen"], "run"].item()}


def report(args, params):
    from sdofm.reports.render import render_report

    render_report(args.notebook, args.executed, args.html, params)
    return {"html": args.html}
