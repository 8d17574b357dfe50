"""Data layer: corpora, tokenizers, deterministic batching."""
from .batching import IGNORE, Batch, Corpus, TokenData, build_corpus, split_documents
from .corpora import SOURCES, load_documents
from .tokenizer import CharTokenizer

__all__ = ["IGNORE", "SOURCES", "Batch", "CharTokenizer", "Corpus", "TokenData", "build_corpus",
           "load_documents", "split_documents"]
