# -*- test-case-name: tests.unit.http.test_api -*-
"""
JSON bytes exactly as Consul's Go encoder writes them.

Go escapes ``<``, ``>`` and ``&`` (and U+2028/U+2029) inside strings and
keeps other non-ASCII characters as UTF-8.  Compact output has no trailing
newline; ``?pretty`` (always on in ``-dev``) indents by four spaces and ends
with a newline.  Those characters can only appear inside JSON strings, so
replacing them in the encoded text is safe.
"""

from __future__ import annotations

import json

_GO_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_TABLE = str.maketrans(_GO_ESCAPES)


def encode(value: object, *, pretty: bool) -> bytes:
    if pretty:
        text = json.dumps(value, ensure_ascii=False, indent=4) + "\n"
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_TABLE).encode("utf-8")
