"""Data layer: corpora (embedded, local files, HF), tokenizers (char, byte-level BPE), batching."""
from .batching import IGNORE, Batch, Corpus, TokenData, build_corpus, split_documents
from .bpe import BPETokenizer, load_tokenizer
from .corpora import SOURCES, Source, load_documents, open_source
from .seq2seq import TASKS, Seq2SeqData, source_ids
from .tokenizer import CharTokenizer
from .tokens import MemmapTokens, bits_per_byte, prepare_bpe

__all__ = ["IGNORE", "SOURCES", "TASKS", "BPETokenizer", "Batch", "CharTokenizer", "Corpus", "MemmapTokens",
           "Seq2SeqData", "Source", "TokenData", "bits_per_byte", "build_corpus", "load_documents", "load_tokenizer",
           "open_source", "prepare_bpe", "source_ids", "split_documents"]
