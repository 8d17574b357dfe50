"""Markdown text pieces shared by every table writer: an escaped table cell."""
from __future__ import annotations

import re

_MARKUP = re.compile(r"([\\`*|]|<(?=[A-Za-z/!?]))")  # `<` only where it could open a tag or an autolink
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # `_` that could open or close emphasis


def cell(text) -> str:
    """A Markdown table cell showing `text` as it is: pipes, backslashes and inline markup (backticks, `*`, a
    `<` that could open a tag, a `_` at a word edge) escaped, newlines flattened; `rmsnorm-pre_lr1e-3` and
    `p < 0.05` stay as they are."""
    text = _MARKUP.sub(r"\\\1", str(text).replace("\r", " ").replace("\n", " "))
    return _UNDERSCORE.sub(r"\\_", text)
