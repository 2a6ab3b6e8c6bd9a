"""How reports show a task's result: one formatting helper every notebook imports.

Examples
--------
>>> fmt({"value": 1.2345, "ci": [1.0, 1.5]})
'1.23 [1, 1.5]'
>>> fmt(None)
'-'
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sdofm.benchmarks.result import KINDS

__all__ = [
    "KIND_COLOUR",
    "KIND_ORDER",
    "arms_table",
    "best_arm",
    "budget_table",
    "differences_table",
    "fmt",
    "headline",
    "runs_table",
    "shortcut_sentence",
    "suns_sentence",
    "verdict_sentence",
]

KIND_ORDER = KINDS
KIND_LABEL = {
    "fm": "foundation model",
    "control": "random-init control",
    "paper": "paper's baseline",
    "shortcut": "shortcut (no spatial structure)",
    "persistence": "persistence",
    "trivial": "trivial",
    "oracle": "oracle ceiling (synthetic truth)",
}
KIND_COLOUR = {
    "fm": "tab:blue",
    "control": "tab:gray",
    "paper": "tab:orange",
    "shortcut": "tab:red",
    "persistence": "tab:green",
    "trivial": "tab:olive",
    "oracle": "tab:purple",
}


def fmt(entry: dict[str, Any] | None, digits: int = 3) -> str:
    """``value [lo, hi]`` of an estimate, ``-`` where there is none."""
    if not entry or entry.get("value") is None:
        return "-"
    out = f"{entry['value']:.{digits}g}"
    lo, hi = entry.get("ci") or (None, None)
    if lo is not None and hi is not None:
        out += f" [{lo:.{digits}g}, {hi:.{digits}g}]"
    return out


def _ordered(result: dict[str, Any]) -> list[str]:
    arms = result["arms"]
    return sorted(arms, key=lambda a: (KIND_ORDER.index(arms[a]["kind"]), a))


def _run_of(result: dict[str, Any]) -> dict[str, str]:
    """arm -> the named run whose backbone it uses (the FM heads and random-init controls)."""
    runs = result.get("runs", {})
    return {e[k]: run for run, e in runs.items() for k in ("fm", "control")}


def arms_table(result: dict[str, Any], metrics: list[str] | None = None) -> pd.DataFrame:
    """Every arm (rows, foundation model first) by metric, as ``value [interval]`` strings; the
    run column names the backbone of each FM head and control (blank: the task's own arms)."""
    names = metrics or list(result["metrics"])
    run_of = _run_of(result)
    rows = []
    for arm in _ordered(result):
        info = result["arms"][arm]
        row = {"arm": arm, "run": run_of.get(arm, ""), "kind": KIND_LABEL[info["kind"]]}
        for m in names:
            arrow = "↑" if result["metrics"][m]["higher_is_better"] else "↓"
            row[f"{result['metrics'][m]['label']} {arrow}"] = fmt(info["metrics"].get(m))
        row["what it is"] = info["description"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def differences_table(result: dict[str, Any], metrics: list[str] | None = None) -> pd.DataFrame:
    """FM head minus every other arm, per metric, with the verdict each interval supports."""
    names = metrics or [result["headline"]["metric"]]
    rows = []
    for arm in _ordered(result):
        if arm not in result["differences"]:
            continue
        row = {"FM head minus": arm, "kind": KIND_LABEL[result["arms"][arm]["kind"]]}
        for m in names:
            d = result["differences"][arm][m]
            row[result["metrics"][m]["label"]] = fmt(d)
            row[f"verdict ({m})"] = d["verdict"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("FM head minus")


def headline(result: dict[str, Any], arm: str) -> dict[str, Any] | None:
    """The headline estimate of one arm (None if the task has no such arm)."""
    info = result["arms"].get(arm)
    return None if info is None else info["metrics"].get(result["headline"]["metric"])


def best_arm(result: dict[str, Any], kind: str) -> str | None:
    """The arm of a kind with the best headline point value (None if the task has none)."""
    metric, hib = result["headline"]["metric"], result["headline"]["higher_is_better"]
    arms = [
        a
        for a, v in result["arms"].items()
        if v["kind"] == kind and v["metrics"][metric]["value"] is not None
    ]
    if not arms:
        return None
    values = {a: result["arms"][a]["metrics"][metric]["value"] for a in arms}
    return max(arms, key=values.get) if hib else min(arms, key=values.get)


def runs_table(results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Named runs (rows) by task: the run's FM head headline [interval] and the verdicts of its
    paired differences against its random-init control and the task's best paper baseline."""
    table: dict[str, dict[str, str]] = {}
    for task, r in results.items():
        metric = r["headline"]["metric"]
        paper = best_arm(r, "paper")
        for run, e in r.get("runs", {}).items():
            cell = fmt(e["headline"])
            for other in (e["control"], paper):
                d = e["differences"].get(other, {}).get(metric) if other else None
                if d is not None:
                    cell += f"<br><small>vs {other}: {d['verdict']}</small>"
            table.setdefault(run, {})[task] = cell
        for run, reason in r["extra"].get("not_applicable", {}).items():
            table.setdefault(run, {})[task] = f"n/a<br><small>{reason}</small>"
    return pd.DataFrame(table).T.rename_axis("run")


def budget_table(results_dir: str, runs: list[str], results: dict[str, dict]) -> pd.DataFrame:
    """Each run's pretraining compute (one step's FLOPs at its batch, times its optimiser steps,
    as `perf/pretrain_throughput.py` counts them) and its FM head's headline on every task."""
    import json
    import os

    from sdofm.models.checkpoint import load_backbone
    from sdofm.models.flops import step_flops

    rows = {}
    for run in runs:
        pre = os.path.join(results_dir, "pretrain", run)
        with open(os.path.join(pre, "summary.json")) as f:
            summary = json.load(f)
        net, hp = load_backbone(os.path.join(pre, "model.ckpt"))
        config = hp.get("config", {})
        batch = config.get("batch_size", 1) * config.get("accumulate_grad_batches", 1)
        row = {
            "backbone": summary["backbone"],
            "M parameters": round(summary["parameters"] / 1e6, 3),
            "steps": summary["steps"],
            "training TFLOPs": step_flops(net.train(), batch) * summary["steps"] / 1e12,
            "final probe R²": summary["final_probe_r2"],
        }
        for task, r in results.items():
            entry = r.get("runs", {}).get(run)
            row[task] = entry["headline"]["value"] if entry else None
        rows[run] = row
    return pd.DataFrame(rows).T.rename_axis("run")


def suns_sentence(result: dict[str, Any]) -> str:
    """Which synthetic Suns the task trained and tested on ('' on real data)."""
    suns = result.get("extra", {}).get("suns")
    if not suns:
        return ""
    name = lambda seeds: ", ".join(f"Sun {s}" for s in seeds) or "none"  # noqa: E731
    held = (
        "a Sun **held out whole**: no training row, and no pretraining, saw it"
        if suns["held_out"]
        else "a Sun the training rows also show (not held out whole)"
    )
    return (
        f"Synthetic Suns: trained on {name(suns['train'])}, validated on {name(suns['val'])}, "
        f"tested on {name(suns['test'])}: {held}."
    )


def verdict_sentence(result: dict[str, Any]) -> str:
    """One sentence per comparison of the FM head on the headline metric, losses included; with
    several named runs, one such sentence per run's FM head; then `shortcut_sentence`."""
    runs = result.get("runs", {})
    tricks = shortcut_sentence(result)
    if len(runs) > 1:
        return " ".join(
            [
                f"Run {run}: "
                + _fm_sentence(result | {"runs": {}, "differences": e["differences"]})
                for run, e in runs.items()
            ]
            + [tricks]
        ).strip()
    return (_fm_sentence(result) + " " + tricks).strip()


SHORTCUT_SAYS = {  # a paired difference's verdict, as the shortcut's result against the other arm
    "shortcut better": "**beats**",
    "FM worse": "**beats**",
    "shortcut worse": "loses to",
    "FM better": "loses to",
    "not distinguishable": "is not distinguishable from",
    "undefined": "cannot be compared with",
}


def shortcut_sentence(result: dict[str, Any]) -> str:
    """Per shortcut arm (kind ``shortcut``), plainly: whether it beats each paper baseline and
    each run's FM head on the headline metric (paired differences); '' if the task has none."""
    metric, label = result["headline"]["metric"], result["headline"]["label"]
    runs = result.get("runs") or {"": {"fm": "fm_head", "differences": result["differences"]}}
    out = []
    for arm, against in result.get("shortcuts", {}).items():
        said = [
            f"{SHORTCUT_SAYS[d[metric]['verdict']]} the paper's baseline {paper} "
            f"(shortcut − paper {fmt(d[metric])})"
            for paper, d in against.items()
        ]
        said += [
            f"{SHORTCUT_SAYS[d['verdict']]} the FM head {e['fm']} (FM − shortcut {fmt(d)})"
            for e in runs.values()
            if (d := e["differences"].get(arm, {}).get(metric)) is not None
        ]
        value = fmt(result["arms"][arm]["metrics"][metric])
        winners = [p for p, diff in against.items() if diff[metric]["verdict"] == "shortcut worse"]
        note = (
            f" The paper's method ({', '.join(winners)}) beats it, as the task requires."
            if winners
            else " No paper baseline beats it: on these data the task can be done without the "
            "images' spatial structure, so it does not test what the real task tests."
        )
        out.append(
            f"**Shortcut check.** On {label}, the shortcut {arm} "
            f"({result['arms'][arm]['description']}; {value}) " + "; ".join(said) + "." + note
        )
    return " ".join(out)


def _fm_sentence(result: dict[str, Any]) -> str:
    """One sentence per comparison of the first (or only) run's FM head on the headline."""
    metric = result["headline"]["metric"]
    label = result["headline"]["label"]
    parts = []
    for arm in _ordered(result):
        d = result["differences"].get(arm, {}).get(metric)
        if d is None:
            continue
        what = {
            "FM better": "better than",
            "FM worse": "worse than",
            "not distinguishable": "not distinguishable from",
            "undefined": "not comparable with",
        }[d["verdict"]]
        parts.append(f"{what} {arm} ({KIND_LABEL[result['arms'][arm]['kind']]}, {fmt(d)})")
    unit = result["protocol"]
    return (
        f"On {label}, the FM head is " + "; ".join(parts) + ". Intervals: "
        f"{100 * unit['level']:.0f} % circular block bootstrap ({unit['block_days']:g}-day blocks) "
        f"over test time with a seed drawn per resample ({len(unit['seeds'])} seeds)."
    )
