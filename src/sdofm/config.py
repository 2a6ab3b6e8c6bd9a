"""Load and validate the workflow configuration against its JSON schema."""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from sdofm import SdofmError

__all__ = [
    "SCHEMA_PATH",
    "TRUTH_TASKS",
    "baseline_channels",
    "check_task",
    "check_patch_size",
    "config_hash",
    "load_config",
    "parse_time",
    "pretrain_runs",
    "runnable_tasks",
    "task_names",
    "validate_block",
    "validate_config",
]

# Package data (a link to workflow/schemas/config.schema.yaml in the repository, the one copy
# the workflow and the package share), so an installed `sdofm` validates outside the repository.
SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

_FORMATS = jsonschema.FormatChecker(formats=())
# Tasks that read the synthetic Sun's ground truth: on real data they are left out of `all`.
TRUTH_TASKS = ("truth_probe",)


@_FORMATS.checks("calendar-date", raises=(ValueError, TypeError))
def _is_calendar_date(value: object) -> bool:
    """A date the calendar has (the schema's pattern checks the form, not 2011-02-30)."""
    return not isinstance(value, str) or bool(pd.Timestamp(value))


def _with_defaults(validator_class):
    """A validator that also fills in schema defaults (as snakemake.utils.validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = json.loads(json.dumps(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _dates_to_strings(node: Any) -> Any:
    """Unquoted YAML dates (``start: 2011-01-01``) as the ISO strings a quoted one gives."""
    if isinstance(node, dict):
        node.update({k: _dates_to_strings(v) for k, v in node.items()})
    elif isinstance(node, list):
        node[:] = [_dates_to_strings(v) for v in node]
    elif isinstance(node, dt.datetime):
        if node.tzinfo is not None:
            node = node.astimezone(dt.UTC).replace(tzinfo=None)
        return node.strftime("%Y-%m-%dT%H:%M:%S")
    elif isinstance(node, dt.date):
        return node.isoformat()
    return node


def _message(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(key, one-line message) of a schema error: unknown keys get "did you mean"."""
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        path.append(error.message.split("'")[1])
        return ".".join(path), "is required but missing"
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(known))[0]
        key = ".".join([*path, unknown])
        close = difflib.get_close_matches(unknown, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return key, f"is not a known key ({hint})"
    if error.validator == "enum" and isinstance(error.instance, str):
        names = {str(v).lower(): str(v) for v in error.validator_value}
        close = difflib.get_close_matches(error.instance.lower(), list(names), n=1)
        hint = f" (did you mean '{names[close[0]]}'?)" if close else ""
        return ".".join(path), error.message + hint
    if error.validator == "pattern" and "description" in error.schema:
        return ".".join(path), f"{error.instance!r} is not {error.schema['description']}"
    if error.validator == "format" and "description" in error.schema:
        what = f"a day of the calendar (expected {error.schema['description']})"
        return ".".join(path), f"{error.instance!r} is not {what}"
    return ".".join(path), error.message


def parse_time(value: str, *, key: str = "time") -> pd.Timestamp:
    """Parse a config date as a UTC-naive timestamp, naming the key on failure."""
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        msg = f"config key '{key}': cannot parse {value!r} as a date ({err})"
        raise SdofmError(msg) from None


def _fail(key: str, message: str):
    msg = f"config key '{key}': {message}"
    raise SdofmError(msg)


def _check_ranges(config: Mapping[str, Any]) -> None:
    """What a JSON schema cannot express: ordered time ranges, splits inside the data range."""
    for section in ("data", "synthetic"):
        block = config.get(section, {})
        if "start" in block and "end" in block:
            start = parse_time(block["start"], key=f"{section}.start")
            end = parse_time(block["end"], key=f"{section}.end")
            if end <= start:
                _fail(
                    f"{section}.end",
                    f"{block['end']} is not after {section}.start {block['start']}: "
                    "the time range is empty",
                )
    synthetic = config.get("synthetic", {})
    if synthetic.get("suns") and config.get("sources", {}).get("sdoml") == "synthetic":
        from sdofm.sources.synthetic.model import SyntheticSun

        keys = ("seed", "start", "end", "suns")
        SyntheticSun(**{k: synthetic[k] for k in keys if k in synthetic}).segments()
    data = config.get("data", {})
    for name in ("val", "test"):
        for i, (a, b) in enumerate(config.get("splits", {}).get(name, [])):
            key = f"splits.{name}.{i}"
            start, end = parse_time(a, key=key), parse_time(b, key=key)
            if end <= start:
                _fail(key, f"interval [{a}, {b}) is empty")
            if (
                "start" in data
                and "end" in data
                and (end <= parse_time(data["start"]) or start >= parse_time(data["end"]))
            ):
                _fail(
                    key,
                    f"interval [{a}, {b}) lies outside the data range "
                    f"[{data['start']}, {data['end']}) (data.start, data.end): it has no rows",
                )


def baseline_channels(chosen: list[str] | None, held: Iterable[str], *, key: str) -> list[str]:
    """The HMI components of flare_forecast's CNN: ``chosen``, each one of ``held`` (the data
    set's HMI components); None: line-of-sight ``Blos`` if held (the paper's input), else Bz."""
    held = [str(c) for c in held]
    if not held:
        _fail(key, "the data set holds no HMI component (data.hmi_components is empty)")
    chosen = chosen or (["Blos"] if "Blos" in held else ["Bz"])
    for name in chosen:
        if name not in held:
            why = (
                " (Blos, line-of-sight magnetograms, comes from level-1 FITS, sources.hmi; "
                "it is not derived from the vector field)"
                if name == "Blos"
                else ""
            )
            _fail(key, f"{name!r} is not an HMI component of the data set{why}: valid: {held}")
    return list(chosen)


def _check_channels(config: dict[str, Any]) -> None:
    """Channels a benchmark needs must be inputs of the data set."""
    data, tasks = config.get("data", {}), config.get("benchmarks", {})
    aia = data.get("aia_channels", [])
    if "flare_forecast" in tasks:
        block = tasks["flare_forecast"]
        block["baseline_channels"] = baseline_channels(
            block.get("baseline_channels"),
            data.get("hmi_components", []),
            key="benchmarks.flare_forecast.baseline_channels",
        )
    target = tasks.get("missing_channel", {}).get("target")
    if target is not None and (target not in aia or len(aia) < 2):
        _fail(
            "benchmarks.missing_channel.target",
            f"{target!r} must be one of at least two AIA channels of data.aia_channels {aia}",
        )


def _validate(instance: Any, schema: dict[str, Any], prefix: str = "") -> None:
    _dates_to_strings(instance)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema, format_checker=_FORMATS)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        key, message = _message(jsonschema.exceptions.best_match(errors))
        _fail(".".join(filter(None, [prefix, key])) or "<top level>", message)


def _schema(schema_path: Path) -> dict[str, Any]:
    path = Path(schema_path)
    if not path.is_file():
        msg = f"the config schema {schema_path} is missing: reinstall the sdofm package"
        raise SdofmError(msg)
    # a copy: validation fills defaults from it into configs that callers may change
    return copy.deepcopy(_parsed_schema(str(path.resolve()), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed_schema(path: str, mtime_ns: int) -> dict[str, Any]:
    """The schema, parsed once per process (a job validates several blocks; libyaml's loader
    where PyYAML has it: 0.05 s instead of 0.3 s)."""
    return yaml.load(Path(path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults, dates as strings) and return it.

    Raises `SdofmError` with a one-line message that names the offending key.
    """
    from sdofm.sources.credentials import check_sources

    _validate(config, _schema(schema_path))
    _check_ranges(config)
    _check_channels(config)
    image_size = config.get("data", {}).get("image_size")
    for name, run in pretrain_runs(config.get("pretrain", {}), schema_path=schema_path).items():
        check_patch_size(run, image_size, f"pretrain.runs.{name}.patch_size")
    check_sources(config.get("sources", {}))  # credentials belong in the environment
    return config


def validate_block(block: Any, *path: str, schema_path: Path = SCHEMA_PATH) -> Any:
    """Validate one config block (e.g. ``"benchmarks", "virtual_eve"``) in place, with defaults.

    What a rule passes to `sdofm <stage> --params` is checked against the same schema as the
    config file, so a hand-written ``--params`` gets the same one-line errors.
    """
    schema = _schema(schema_path)
    sub = schema
    for key in path:
        sub = sub["properties"][key]
    _validate(block, sub | {"definitions": schema.get("definitions", {})}, ".".join(path))
    return block


def pretrain_runs(block: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The named runs of a ``pretrain`` block: name -> that run's complete block (no ``runs``).

    Each run is the block with its own overrides, validated as a ``pretrain`` block (an unknown
    or out-of-range key names the run). Without ``runs``: one run named after the backbone.
    """
    base = {k: v for k, v in block.items() if k != "runs"}
    runs = block.get("runs") or {base.get("backbone", "mae_tiny"): {}}
    out = {}
    for name, overrides in runs.items():
        if "runs" in overrides:
            _fail(f"pretrain.runs.{name}.runs", "a run cannot hold runs of its own")
        merged = copy.deepcopy(base) | copy.deepcopy(dict(overrides))
        try:
            out[name] = validate_block(merged, "pretrain", schema_path=schema_path)
        except SdofmError as err:
            msg = f"pretrain.runs.{name}: {err}"
            raise SdofmError(msg) from None
    return out


def check_patch_size(run: Mapping[str, Any], image_size: int | None, key: str) -> None:
    """A run's ``patch_size`` (MAEs; None: the preset's) must divide the image size."""
    patch = run.get("patch_size")
    if patch and image_size and image_size % patch:
        _fail(key, f"{patch} px does not divide data.image_size {image_size} px")


def task_names(schema_path: Path = SCHEMA_PATH) -> list[str]:
    """The benchmark tasks, one block each under ``benchmarks:`` in the schema (no torch import)."""
    return sorted(_schema(schema_path)["properties"]["benchmarks"]["properties"])


def runnable_tasks(config: Mapping[str, Any]) -> list[str]:
    """The tasks a config runs: its ``benchmarks`` blocks, less `TRUTH_TASKS` on real data."""
    synthetic = config["sources"]["sdoml"] == "synthetic"
    return sorted(t for t in config["benchmarks"] if synthetic or t not in TRUTH_TASKS)


def check_task(task: str, tasks: Iterable[str]) -> None:
    """A task output was asked of ``task``, which the config does not run: one line with its tasks.

    Snakemake itself would only say that no rule produces the file.
    """
    tasks = sorted(tasks)
    if task in tasks:
        return
    known = task_names()
    if task in TRUTH_TASKS:
        msg = (
            f"'{task}' runs only on the synthetic Sun (it needs its ground truth) and with a "
            f"benchmarks.{task} block (this config runs: {', '.join(tasks)})"
        )
        raise SdofmError(msg)
    if task in known:
        msg = f"'{task}' has no benchmarks.{task} block in the config (it runs: {', '.join(tasks)})"
        raise SdofmError(msg)
    others = [t for t in known if t not in tasks]
    also = f"; also known: {', '.join(others)}" if others else ""
    msg = f"'{task}' is not a benchmark task (this config runs: {', '.join(tasks)}{also})"
    raise SdofmError(msg)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    if not path.is_file():
        msg = f"config file {path} does not exist"
        raise SdofmError(msg)
    config = yaml.safe_load(path.read_text()) or {}
    return validate_config(config)


def config_hash(block: Any) -> str:
    """A short, stable hash of a config block, for provenance."""
    text = json.dumps(block, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
