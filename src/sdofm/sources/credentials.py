"""Keep credentials out of configs, command lines, logs and provenance: refuse and redact them.

Config blocks travel to every job on its command line (``sdofm ... --params JSON``), so Snakemake
prints them, stores them under ``.snakemake/`` and a batch system writes them into job scripts.
Credentials therefore never belong in the config: fsspec reads them from the environment
(``FSSPEC_<PROTOCOL>_<OPTION>`` or ``FSSPEC_<PROTOCOL>`` as JSON), from ``~/.config/fsspec``
(``FSSPEC_CONFIG_DIR``), and s3fs from the AWS chain (``AWS_PROFILE``, ``AWS_ACCESS_KEY_ID`` …).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from sdofm import SdofmError

__all__ = ["check_sources", "check_storage_options", "redact", "redact_library_logs", "redact_url"]

WHERE = (
    "give credentials through the environment instead (FSSPEC_<PROTOCOL>_<OPTION>, e.g. "
    "FSSPEC_S3_KEY/FSSPEC_S3_SECRET, or AWS_PROFILE; or a JSON file in ~/.config/fsspec): "
    "config values are written on command lines and in logs"
)
# An option whose name holds one of these words carries a credential (s3fs key/secret/token,
# client_kwargs aws_secret_access_key, an Authorization header, a password, an API key ...).
_SECRET_WORDS = (
    *("secret", "password", "passwd", "token", "credential", "auth", "cookie"),
    *("access_key", "account_key", "private_key", "api_key", "apikey"),
)
_SECRET_NAMES = {"key", "pass", "pwd"}
_SECRET_SUFFIXES = ("_key", "_sas")
# Token values that name a way to authenticate rather than hold a secret (gcsfs: token="anon").
_PUBLIC_TOKENS = {"anon", "anonymous", "google_default", "cache", "cloud", "browser"}
# scheme://user[:password]@host: the user-info part of a URL.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
# An HTTP (Proxy-)Authorization header as a library's repr quotes it ('Authorization': 'Basic …').
_AUTH_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n,)>]+", re.IGNORECASE
)
# Loggers that print a failed request's repr, headers included: asyncio reports the errors of
# concurrent chunk reads nobody awaited ("Task exception was never retrieved").
_REQUEST_LOGGERS = ("asyncio", "fsspec", "fsspec.http", "aiohttp.client", "aiohttp.internal")


def redact_url(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``.

    >>> redact_url("cannot open https://ann:hunter2@example.org/sdoml/")
    'cannot open https://***@example.org/sdoml/'
    """
    return _USERINFO.sub(r"\g<scheme>***@", str(text))


def redact(text: str) -> str:
    """``text`` without URL user-info (`redact_url`) or Authorization header values.

    >>> redact("headers={'Authorization': 'Basic aGVsaW86c2VjcmV0'}")
    "headers={'Authorization': '***'}"
    """
    return _AUTH_HEADER.sub(r"\g<name>***", redact_url(text))


class _Redacting(logging.Filter):
    """Log records with their message and traceback passed through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def redact_library_logs() -> None:
    """Redact what the I/O libraries log (`_REQUEST_LOGGERS`): a failed request's repr holds
    its headers, credentials from the environment (``FSSPEC_HTTP``) among them."""
    for name in _REQUEST_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _Redacting) for f in log.filters):
            log.addFilter(_Redacting())


def _is_secret(name: str, value: Any) -> bool:
    word = str(name).lower().replace("-", "_")
    if word == "token" and isinstance(value, str) and value in _PUBLIC_TOKENS:
        return False
    return (
        word in _SECRET_NAMES
        or word.endswith(_SECRET_SUFFIXES)
        or any(w in word for w in _SECRET_WORDS)
    )


def check_storage_options(options: Any, key: str = "sources.storage_options") -> None:
    """Refuse fsspec options that hold credentials, naming the key and where they belong.

    Non-secret options (``anon: true``, ``endpoint_url``, ``requester_pays`` …) are fine.
    """
    if isinstance(options, Mapping):
        items = [(f"{key}.{k}", k, v) for k, v in options.items()]
    elif isinstance(options, list):
        items = [(f"{key}.{i}", "", v) for i, v in enumerate(options)]
    else:
        items = []
    for path, name, value in items:
        if _is_secret(name, value):
            msg = f"config key '{path}' looks like a credential: {WHERE}"
            raise SdofmError(msg)
        if isinstance(value, str) and redact_url(value) != value:
            msg = f"config key '{path}' holds a URL with a user or password: {WHERE}"
            raise SdofmError(msg)
        check_storage_options(value, path)


def check_sources(sources: Mapping[str, Any]) -> None:
    """Refuse credentials anywhere in the ``sources`` block (storage options, URLs)."""
    check_storage_options(sources.get("storage_options") or {})
    url = sources.get("sdoml")
    if isinstance(url, str) and redact_url(url) != url:
        msg = f"config key 'sources.sdoml' holds a URL with a user or password: {WHERE}"
        raise SdofmError(msg)
