"""A task's result: a dataclass whose JSON form (metrics.json) is checked against a schema file.

The schema is ``result.schema.json`` beside this module; `write_result` validates before it
writes, so a malformed result never lands where a report would read it.
"""

from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from sdofm import SdofmError
from sdofm.config import config_hash
from sdofm.io import atomic_output

__all__ = [
    "KINDS",
    "SCHEMA_PATH",
    "Result",
    "provenance",
    "read_result",
    "validate_result",
    "write_json",
]

SCHEMA_PATH = Path(__file__).with_name("result.schema.json")
# The kinds of arm, in the order reports show them; "shortcut": a trick that ignores the images'
# spatial structure (`sdofm.benchmarks.shortcuts`), never the paper's baseline
KINDS = ("fm", "control", "paper", "shortcut", "persistence", "trivial", "oracle")


@dataclass
class Result:
    """Everything metrics.json holds; see ``result.schema.json`` for each field."""

    task: str
    title: str
    description: str
    headline: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    split: dict[str, Any]
    protocol: dict[str, Any]
    arms: dict[str, dict[str, Any]]
    differences: dict[str, dict[str, Any]]
    verdicts: list[str]
    provenance: dict[str, Any]
    published_anchor: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    shortcuts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (NaN and inf become null), validated against the schema."""
        data = _clean(asdict(self))
        validate_result(data)
        return data


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_clean(x) for x in v]
    if isinstance(v, float | np.floating):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


@cache
def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def validate_result(data: dict[str, Any]) -> None:
    """Raise `SdofmError` naming the first field of ``data`` that breaks the schema."""
    err = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(_schema()).iter_errors(data)
    )
    if err is not None:
        where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
        msg = f"metrics.json field '{where}' breaks {SCHEMA_PATH.name}: {err.message}"
        raise SdofmError(msg)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(_clean(obj), indent=2))


def read_result(path: str | Path) -> dict[str, Any]:
    """Read and validate a metrics.json."""
    data = json.loads(Path(path).read_text())
    validate_result(data)
    return data


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(
    params: dict[str, Any], *, checkpoint_sha: str | None, embeddings_sha: str | None
) -> dict[str, Any]:
    """Where a result came from: config and checkpoint hashes, package versions, git commit."""
    packages = ["sdofm", "torch", "lightning", "numpy", "scikit-learn", "xarray", "zarr", "sunpy"]
    return {
        "config_hash": config_hash(params),
        "config": params,
        "checkpoint_sha256": checkpoint_sha,
        "embeddings_checkpoint_sha256": embeddings_sha,
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in packages},
    }
