"""Reading text tables (CSV, JSON records) so that every problem names the file and the line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError

__all__ = ["json_records", "naive_utc", "numbers", "read_csv_checked", "read_text"]


def naive_utc(values: Any) -> pd.DatetimeIndex:
    """A DatetimeIndex in UTC without a time zone (aware inputs are converted first)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx


def read_text(path: Path, what: str) -> str:
    """The file's text; a missing, binary or non-UTF-8 file is one clear error."""
    if not path.is_file():
        msg = f"no {what} at {path}"
        raise SdofmError(msg)
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        msg = f"{path} is a binary file, not a {what} (text)"
        raise SdofmError(msg)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        msg = f"{path} line {line}: not UTF-8 text, so not a {what}"
        raise SdofmError(msg) from None


def read_csv_checked(
    path: Path, what: str, *, required: Sequence[str] = (), lower: bool = True
) -> pd.DataFrame:
    """A CSV read as strings, with stripped (lower-case) column names.

    A missing, empty, binary or ragged file, or one without the ``required`` columns, raises
    `SdofmError` naming the file (and the line where pandas found the problem).
    """
    read_text(path, what)
    try:
        df = pd.read_csv(path, dtype=str, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        msg = f"{path} is empty: expected a {what} with a header line"
        raise SdofmError(msg) from None
    except (pd.errors.ParserError, ValueError) as err:
        text = " ".join(str(err).split()).removeprefix("Error tokenizing data. C error: ")
        msg = f"{path}: not a well-formed {what} CSV: {text}"
        raise SdofmError(msg) from None
    df.columns = [str(c).strip().lower() if lower else str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        msg = (
            f"{path} line 1: not a {what}: expected columns {list(required)}, "
            f"missing {missing} (found {list(df.columns)})"
        )
        raise SdofmError(msg)
    return df


def numbers(values: pd.Series | None, path: Path, what: str, n: int) -> np.ndarray:
    """Floats from a column of strings (empty cells NaN); text that is no number is an error."""
    if values is None:
        return np.full(n, np.nan)
    text = values.astype("string").str.strip()
    out = pd.to_numeric(text, errors="coerce")
    bad = out.isna() & text.notna() & (text != "") & (text.str.lower() != "nan")
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        msg = f"{path} line {values.index[i] + 2}: {what} {text.iloc[i]!r} is not a number"
        raise SdofmError(msg)
    return out.to_numpy(np.float64, na_value=np.nan)


def json_records(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """A JSON array of objects as (line number, record) pairs, for messages that name the line."""
    text = read_text(path, what)
    decoder = json.JSONDecoder()

    def fail(pos: int, expected: str) -> SdofmError:
        line = text.count("\n", 0, pos) + 1
        return SdofmError(f"{path} line {line}: expected {expected} ({what})")

    pos = len(text) - len(text.lstrip())
    if pos >= len(text) or text[pos] != "[":
        raise fail(pos, "a JSON array '[' of records")
    pos += 1
    records = []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == "]":
            break
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise fail(err.pos, f"a JSON value: {err.msg}") from None
        if not isinstance(obj, dict):
            raise fail(pos, f"a JSON object per record, found {type(obj).__name__}")
        records.append((text.count("\n", 0, pos) + 1, obj))
        pos = end
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            raise fail(pos, "',' or ']' after a record")
    return records
