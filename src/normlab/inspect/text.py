"""The text `normlab inspect` reads, and the windows it cuts from it.

--text is a file when one exists at that path; a value that looks like a file name (a text suffix, or a
slash and no spaces) but names no file is an error; anything else is the text itself. Without --text the
text is the embedded `names` corpus (5,163 US Census first names), shuffled with seed 0 and joined by
spaces: it needs no download and gives every tokenizer thousands of tokens. It is not prose: Sun et al.
find massive activations at the first token whatever the text, but Gu et al. measure sinks on natural
text, so pass a prose file for their exact setting.

Windows: the whole text is tokenized once without special tokens (no BOS, as Gu et al. measure sinks) and
cut into consecutive, non-overlapping windows of --seq-len tokens; the first --n-seqs are used (fewer when
the text has fewer, which the report states).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ConfigError

TEXT_SUFFIXES = (".txt", ".md", ".text", ".json", ".jsonl", ".csv", ".tsv", ".html", ".xml", ".rst")
SEQ_LEN = (2, 8192)
N_SEQS = (1, 10_000)


@dataclass
class Text:
    text: str
    origin: str        # "file <path>", "string (N chars)" or "names corpus ..."


def default_text() -> Text:
    from ..data.corpora import _names

    names = list(_names())
    random.Random(0).shuffle(names)
    return Text(" ".join(names), f"the embedded names corpus ({len(names):,} first names, shuffled with seed 0, "
                                 "joined by spaces)")


def read_text(value: str | None) -> Text:
    if value is None:
        return default_text()
    path = Path(value).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise ConfigError(f"--text {value}: cannot read it ({err.strerror})") from None
        if not text.strip():
            raise ConfigError(f"--text {value}: the file is empty")
        return Text(text, f"file {path}")
    if path.is_dir():
        raise ConfigError(f"--text {value} is a directory; give a text file or the text itself")
    if value.lower().endswith(TEXT_SUFFIXES) or ("/" in value and not any(c.isspace() for c in value)):
        raise ConfigError(f"--text {value}: no such file")
    if not value.strip():
        raise ConfigError("--text is empty")
    return Text(value, f"the string given to --text ({len(value)} characters)")


def parse_int(value, name: str, bounds: tuple[int, int]) -> int:
    """An integer option checked against its range: one ConfigError line otherwise."""
    try:
        n = int(str(value), 10)
    except ValueError:
        raise ConfigError(f"{name} must be an integer in [{bounds[0]}, {bounds[1]}], not {value!r}") from None
    if not bounds[0] <= n <= bounds[1]:
        raise ConfigError(f"{name}={n} is out of range [{bounds[0]}, {bounds[1]}]")
    return n


CHARS_PER_TOKEN = 8   # a prefix of this many characters per needed token is tokenized first (a long file)
MARGIN = 64           # tokens dropped from the prefix's end, where a cut word tokenizes differently


def windows(tokenizer, text: Text, seq_len: int, n_seqs: int) -> tuple[torch.Tensor, int]:
    """(n, seq_len) token ids, n <= n_seqs, and the number of tokens read (the whole text's, unless a prefix
    already held every window: then the prefix's, its end, where a word may be cut, left out)."""
    need = n_seqs * seq_len
    ids = None
    if len(text.text) > 2 * CHARS_PER_TOKEN * need:
        ids = tokenizer(text.text[: CHARS_PER_TOKEN * need], add_special_tokens=False)["input_ids"]
        margin = max(seq_len, MARGIN)
        ids = ids[: len(ids) - margin] if len(ids) >= need + margin else None
    if ids is None:
        ids = tokenizer(text.text, add_special_tokens=False)["input_ids"]
    if len(ids) < seq_len:
        raise ConfigError(f"the text has {len(ids)} tokens, fewer than --seq-len {seq_len}; give a longer text "
                          "or a shorter --seq-len")
    n = min(n_seqs, len(ids) // seq_len)
    return torch.tensor(ids[: n * seq_len], dtype=torch.long).view(n, seq_len), len(ids)
