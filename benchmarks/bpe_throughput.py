"""Byte-level BPE training and streaming-encode throughput (MB/s, tokens/s) on a local text file.

    python benchmarks/bpe_throughput.py /path/to/tinystories_v1_train_first2MiB.txt --vocab 2048 10000
Times one BPETokenizer.train pass and one encode_split pass (chunked encode_batch -> uint16 memmap
file), the two steps `normlab` runs once per corpus and settings before the cache is reused.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from normlab.data import open_source
from normlab.data.bpe import BPETokenizer
from normlab.data.tokens import encode_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--vocab", type=int, nargs="+", default=[2048, 10000])
    args = ap.parse_args()
    src = open_source(f"text:{args.path}")
    docs = list(src.splits["train"]())
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"{len(docs)} documents, {mb:.2f} MB of text")
    print("| vocab | train s | train MB/s | encode s | encode MB/s | tokens/s | bytes/token |")
    print("|---|---|---|---|---|---|---|")
    for vocab in args.vocab:
        t0 = time.perf_counter()
        tok = BPETokenizer.train(iter(docs), vocab, ["<|endoftext|>"])
        t_train = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            stats = encode_split(tok, iter(docs), Path(tmp) / "x.bin", None, None)
            t_enc = time.perf_counter() - t0
        print(f"| {vocab} | {t_train:.2f} | {mb / t_train:.2f} | {t_enc:.2f} | {mb / t_enc:.2f} | "
              f"{stats['n_tokens'] / t_enc:,.0f} | {stats['n_bytes'] / stats['n_tokens']:.2f} |")


if __name__ == "__main__":
    main()
