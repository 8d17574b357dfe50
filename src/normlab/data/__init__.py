"""Data layer: corpora, tokenizers, deterministic batching."""
from .batching import IGNORE, Batch, Corpus, TokenData, build_corpus, split_documents
from .corpora import SOURCES, load_documents
from .seq2seq import TASKS, Seq2SeqData, source_ids
from .tokenizer import CharTokenizer

__all__ = ["IGNORE", "SOURCES", "TASKS", "Batch", "CharTokenizer", "Corpus", "Seq2SeqData", "TokenData",
           "build_corpus", "load_documents", "source_ids", "split_documents"]
