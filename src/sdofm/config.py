"""Load and validate the workflow configuration against its JSON schema."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from sdofm import SdofmError

__all__ = [
    "SCHEMA_PATH",
    "config_hash",
    "load_config",
    "parse_time",
    "validate_block",
    "validate_config",
]

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


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


def _key(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        path = f"{path}.{missing}" if path else missing
    if error.validator == "additionalProperties":
        path = path or "<top level>"
    return path or "<top level>"


def parse_time(value: str, *, key: str = "time") -> pd.Timestamp:
    """Parse a config date as a UTC-naive timestamp, naming the key on failure."""
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as err:
        msg = f"config key '{key}': cannot parse {value!r} as a date ({err})"
        raise SdofmError(msg) from None


def _check_ranges(config: Mapping[str, Any]) -> None:
    """Checks a JSON schema cannot express: ordered time ranges."""
    pairs = [("data", config.get("data", {}))]
    if "synthetic" in config:
        pairs.append(("synthetic", config["synthetic"]))
    for section, block in pairs:
        if "start" in block and "end" in block:
            start = parse_time(block["start"], key=f"{section}.start")
            end = parse_time(block["end"], key=f"{section}.end")
            if end <= start:
                msg = (
                    f"config key '{section}.end': {block['end']} is not after "
                    f"{section}.start {block['start']}: the time range is empty"
                )
                raise SdofmError(msg)
    for name in ("val", "test"):
        for i, (a, b) in enumerate(config.get("splits", {}).get(name, [])):
            key = f"splits.{name}.{i}"
            if parse_time(b, key=key) <= parse_time(a, key=key):
                msg = f"config key '{key}': interval [{a}, {b}) is empty"
                raise SdofmError(msg)


def _validate(instance: Any, schema: dict[str, Any], prefix: str = "") -> None:
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        key = _key(err)
        key = prefix if key == "<top level>" and prefix else ".".join(filter(None, [prefix, key]))
        msg = f"config key '{key}': {err.message}"
        raise SdofmError(msg)


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises `SdofmError` with a one-line message that names the offending key.
    """
    from sdofm.sources.credentials import check_sources

    _validate(config, yaml.safe_load(Path(schema_path).read_text()))
    _check_ranges(config)
    check_sources(config.get("sources", {}))  # credentials belong in the environment
    return config


def validate_block(block: Any, *path: str, schema_path: Path = SCHEMA_PATH) -> Any:
    """Validate one config block (e.g. ``"benchmarks", "virtual_eve"``) in place, with defaults.

    What a rule passes to `sdofm <stage> --params` is checked against the same schema as the
    config file, so a hand-written ``--params`` gets the same one-line errors.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    sub = schema
    for key in path:
        sub = sub["properties"][key]
    _validate(block, sub | {"definitions": schema.get("definitions", {})}, ".".join(path))
    return block


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
