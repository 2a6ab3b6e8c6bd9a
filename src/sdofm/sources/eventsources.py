"""Where a run's event data come from: the ``sources.events`` config resolved to files or fetches.

Each of ``flares``, ``f107`` and ``goes`` is null (the synthetic mirror's file), a path (relative
paths are relative to the config file that sets them), a glob (``goes`` only), or a keyword:
``flares: hek`` (fetched from HEK) or ``flares: goes`` (derived from the GOES series), and
``f107: lisird`` (fetched from LISIRD).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sdofm import SdofmError
from sdofm.sources.events import EVENT_FILES

__all__ = [
    "DOWNLOADS",
    "config_path",
    "FETCHED",
    "event_files",
    "event_inputs",
    "fetch_event",
    "resolve_event_sources",
]

FETCHED = {"flares": "hek", "f107": "lisird"}  # keyword → fetched into DOWNLOADS[key]
DOWNLOADS = {"flares": "flares.csv", "f107": "f107.csv"}  # under results/data/downloads
KEYWORDS = {"flares": {"hek", "goes"}, "f107": {"lisird"}, "goes": set()}
EXPECTED = {
    "flares": "a HEK or SWPC/NOAA CSV file, 'hek' (fetched online) or 'goes' (derived from "
    "sources.events.goes)",
    "f107": "a daily F10.7 file (NOAA SWPC JSON, LISIRD CSV or Penticton text) or 'lisird' "
    "(fetched online)",
    "goes": "a GOES XRS file or glob (CSV, NOAA netCDF, NASCOM FITS) or null",
}


def config_path(value: str, key: str, config_files: Sequence[str | Path]) -> str:
    """``value`` (a path or glob given under the dotted config ``key``) made absolute: relative
    to the directory of the last config file that sets ``key`` to it, else the current one.

    ``config_files`` are in increasing precedence (the default config, then ``--configfile``
    files).
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return os.path.abspath(path)
    base = Path.cwd()
    for f in config_files:
        block: Any = yaml.safe_load(Path(f).read_text()) if Path(f).is_file() else None
        for part in key.split("."):
            block = block.get(part) if isinstance(block, dict) else None
        if block == value:
            base = Path(f).parent
    return os.path.abspath(base / path)  # normalised, glob patterns kept


def resolve_event_sources(
    events: dict[str, Any], *, synthetic: bool, config_files: Sequence[str | Path] = ()
) -> dict[str, str | None]:
    """``sources.events`` with relative paths made absolute (`config_path`), checked for a
    real-data run."""
    out: dict[str, str | None] = {}
    for key in EVENT_FILES:
        value = events.get(key)
        if value is None:
            if not synthetic and key != "goes":
                msg = (
                    f"config key 'sources.events.{key}': real data (sources.sdoml is not "
                    f"'synthetic') needs {EXPECTED[key]}"
                )
                raise SdofmError(msg)
            out[key] = None
        elif value in KEYWORDS[key]:
            out[key] = value
        else:
            out[key] = config_path(value, f"sources.events.{key}", config_files)
    if out["flares"] == "goes" and out["goes"] is None and not synthetic:
        msg = (
            "config key 'sources.events.flares': 'goes' needs sources.events.goes (GOES XRS files)"
        )
        raise SdofmError(msg)
    return out


def event_inputs(resolved: dict[str, str | None], downloads: str | Path) -> dict[str, Any]:
    """Files a run's event collection reads: existing paths, glob matches, or fetched files.

    Keys are those of `EVENT_FILES` whose source is a file (absent: the synthetic mirror's or
    derived); fetched sources map to their file under ``downloads``.
    """
    inputs: dict[str, Any] = {}
    for key, value in resolved.items():
        if value is None or value == "goes":
            continue
        if FETCHED.get(key) == value:
            inputs[key] = str(Path(downloads) / DOWNLOADS[key])
        elif glob.has_magic(value):
            files = sorted(glob.glob(value))
            if not files:
                msg = f"config key 'sources.events.{key}': no file matches {value}"
                raise SdofmError(msg)
            inputs[key] = files
        else:
            inputs[key] = value
    return inputs


def event_files(
    resolved: dict[str, Any], *, mirror: str | Path | None, downloads: str | Path, data: dict
) -> dict[str, Any]:
    """Concrete sources for `collect_events`: the ``mirror``'s files stand in for unset ones,
    keywords to fetch are downloaded into ``downloads`` now; 'goes' flares and paths pass."""
    out: dict[str, Any] = {}
    for key, value in resolved.items():
        if value is None:
            found = Path(mirror) / EVENT_FILES[key] if mirror else None
            out[key] = str(found) if found and (key != "goes" or found.exists()) else None
        elif isinstance(value, str) and FETCHED.get(key) == value:
            out[key] = str(Path(downloads) / DOWNLOADS[key])
            fetch_event(key, out[key], start=data["start"], end=data["end"])
        else:
            out[key] = value
    for key in ("flares", "f107"):
        if out[key] is None:
            msg = f"no {key} source: set sources.events.{key} or give the synthetic mirror"
            raise SdofmError(msg)
    return out


def fetch_event(key: str, out: str | Path, *, start: Any, end: Any) -> int:
    """Fetch the online source of ``key`` (``flares`` from HEK, ``f107`` from LISIRD) to ``out``."""
    if key == "flares":
        from sdofm.sources.flarelists import fetch_hek_flares

        return fetch_hek_flares(start, end, out)
    if key == "f107":
        from sdofm.sources.f107 import fetch_lisird_f107

        return fetch_lisird_f107(start, end, out)
    msg = f"no online source to fetch for {key!r}: expected 'flares' or 'f107'"
    raise SdofmError(msg)
