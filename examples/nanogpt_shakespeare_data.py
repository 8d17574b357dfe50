"""nanoGPT's shakespeare_char data as two normlab `text:` files: its split (the first 90 % of input.txt to train on,
the last 10 % to validate on, contiguous) as character streams, newlines kept.

    python examples/nanogpt_shakespeare_data.py input.txt OUT_DIR
    normlab run calibration --preset nanogpt data.source=text:OUT_DIR/train.txt data.val_source=text:OUT_DIR/val.txt
    normlab run calibration nanogpt:data.source=text:OUT_DIR/train.txt nanogpt:data.val_source=text:OUT_DIR/val.txt

Why a script: normlab reads a plain text file one document per line (a newline becomes the boundary token, blank
lines are dropped), but nanoGPT predicts every character, newlines and blank lines included. A text file holding
the `<|endoftext|>` marker is read one document per marker-separated chunk with its newlines, so each half is
written as chunks of about CHUNK characters cut at a blank line (a speech boundary), a marker after each: the
documents hold nanoGPT's characters, and at each of the few cuts a boundary token stands in for the blank line.
"""
from __future__ import annotations

import sys
from pathlib import Path

MARKER = "<|endoftext|>"
CHUNK = 100_000


def chunks(text: str, size: int = CHUNK) -> list[str]:
    """`text` cut after a blank line every ~size characters; at least two pieces (normlab needs two documents)."""
    size = min(size, max(1, len(text) // 2))
    out, start = [], 0
    while start < len(text):
        cut = text.find("\n\n", start + size)
        if cut < 0 or len(text) - cut < size // 2:   # no blank line left, or too short a tail: keep it whole
            out.append(text[start:])
            break
        out.append(text[start:cut + 2])
        start = cut + 2
    return out


def split(text: str) -> tuple[str, str]:
    """nanoGPT's data/shakespeare_char/prepare.py: train = data[:int(n * 0.9)], val = data[int(n * 0.9):]."""
    n = int(len(text) * 0.9)
    return text[:n], text[n:]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python examples/nanogpt_shakespeare_data.py INPUT_TXT OUT_DIR", file=sys.stderr)
        return 2
    source, out = Path(argv[0]), Path(argv[1])
    if not source.is_file():
        print(f"error: {source} is not a file (nanoGPT's input.txt, Tiny Shakespeare)", file=sys.stderr)
        return 2
    text = source.read_text(encoding="utf-8")
    if MARKER in text:
        print(f"error: {source} already holds {MARKER}; give the original input.txt", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name, half in zip(("train", "val"), split(text)):
        pieces = chunks(half)
        if len(pieces) < 2:
            print(f"error: the {name} half of {source} has no blank line to cut at; is it Tiny Shakespeare?",
                  file=sys.stderr)
            return 2
        (out / f"{name}.txt").write_text("".join(p + MARKER for p in pieces), encoding="utf-8")
        print(f"{out / (name + '.txt')}: {len(half):,} characters in {len(pieces)} documents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
