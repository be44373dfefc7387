"""Text that came from outside (a server, a dataset, a URL) made safe to show or store.

Three jobs, one module:

- :func:`escape_text` makes control and escape characters visible (``\\x1b``),
  so an error body with ANSI codes cannot clear the screen or retitle the
  terminal through a log line;
- :func:`redact_url` and :func:`redact_text` remove credentials typed into a
  URL (``http://user:KEY@host``, ``?api_key=KEY``) before the URL reaches
  ``config.yaml``, a log, the summary or a dataset card;
- :func:`dumps_line` writes any row as one JSON line that is valid UTF-8 and
  stays one line for every reader (lone surrogates and U+2028 escaped).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from typing import Any

SECRET_PARAMS = frozenset(
    {"key", "api_key", "apikey", "api-key", "token", "access_token", "auth", "sig", "signature"}
    | {"password", "secret", "client_secret", "x-api-key", "hf_token", "code"}
)
"""Query parameters whose values are treated as credentials."""

REDACTED = "***"
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_USERINFO_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#@]*)@")
_SECRET_PARAM_RE = re.compile(
    r"([?&](?:" + "|".join(re.escape(p) for p in sorted(SECRET_PARAMS)) + r")=)[^&#\s'\"]*",
    re.IGNORECASE,
)
_KEEP = frozenset("\n\t")


def escape_text(text: str, *, keep_newlines: bool = False) -> str:
    """Make control, format and escape characters visible.

    Args:
        text: Untrusted text (an error body, a dataset field, a file name).
        keep_newlines: Leave ``\\n`` and ``\\t`` as they are (multi-line messages).

    Returns:
        The text with every such character written as ``\\xNN`` or ``\\uNNNN``.

    >>> escape_text("bad\\x1b[2J\\x1b]0;owned\\x07 end")
    'bad\\\\x1b[2J\\\\x1b]0;owned\\\\x07 end'
    """
    out = []
    for ch in text:
        if keep_newlines and ch in _KEEP:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def redact_url(url: str) -> str:
    """Drop a password from the userinfo and the values of secret query parameters.

    Everything else is kept byte for byte (no re-encoding).

    >>> redact_url("http://me:sk-123@host:8000/v1?api_key=sk-123&x=1")
    'http://me:***@host:8000/v1?api_key=***&x=1'
    """
    url = _USERINFO_RE.sub(_redact_userinfo, url, count=1)
    return _SECRET_PARAM_RE.sub(lambda m: m.group(1) + REDACTED, url)


def _redact_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match.group(2).partition(":")
    return f"{match.group(1)}{user}:{REDACTED}@" if sep else f"{match.group(1)}{REDACTED}@"


def redact_text(text: str) -> str:
    """:func:`redact_url` applied to every URL inside ``text``."""
    if "://" not in text:
        return text
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)


def redact_config(value: Any) -> Any:
    """A copy of a plain config dict with every URL-like string redacted."""
    if isinstance(value, dict):
        return {k: redact_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_config(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def safe_message(text: str) -> str:
    """Untrusted text for a one-line message: credentials redacted, controls escaped."""
    return escape_text(redact_text(text))


def dumps_line(obj: Any) -> str:
    """One JSON line for a JSONL file, whatever ``obj`` holds.

    Lone surrogates (``"\\ud800"`` in a source row) become ``\\ud800`` escapes
    instead of failing the UTF-8 write, U+2028/U+2029 are escaped so that no
    reader sees two lines, and values JSON cannot hold are written as repr.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, default=repr)
    except (ValueError, RecursionError) as exc:
        text = json.dumps({"unserialisable": repr(obj)[:10_000], "error": type(exc).__name__})
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class SafeLogFilter(logging.Filter):
    """A handler filter: every record's message is redacted and escaped before output.

    Tracebacks keep their lines (``exc_text`` is left alone); the message itself
    is made one safe line, so text from a server cannot drive the terminal.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show it as is, safely
            message = str(record.msg)
        record.msg = escape_text(redact_text(message), keep_newlines=True)
        record.args = None
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Attach :class:`SafeLogFilter` to every handler of ``logger`` (default: root)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(SafeLogFilter())
