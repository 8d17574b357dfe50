"""Remote corpora from the Hugging Face Hub, downloaded once into `<data.cache_dir>/hf`.

Two loaders, both the libraries' own: `datasets.load_dataset` for datasets with a viewer-ready
layout (TinyStories, WikiText-2, Tiny Shakespeare's parquet export) and
`huggingface_hub.hf_hub_download` for plain files (the CS336 OpenWebText sample, gzipped text).
Any failure to fetch (offline, no such repo) becomes a ConfigError naming the source, the cache
path and the `text:<path>` alternative, never a library traceback; so does a missing `hf` extra.
"""
from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

from ..config import ConfigError
from .errors import cache_folder, first_line, require
from .localtext import iter_text_file


@dataclass(frozen=True)
class HubSource:
    name: str
    repo: str
    about: str
    config: str | None = None
    revision: str | None = None
    text_field: str = "text"
    splits: dict = field(default_factory=lambda: {"train": "train", "validation": "validation"})
    files: dict = field(default_factory=dict)   # split -> filename for hf_hub_download sources
    per_line: bool = False                      # one document per line of each row's text


HUB_SOURCES: dict[str, HubSource] = {s.name: s for s in [
    HubSource("tinystories", "roneneldan/TinyStories",
              "TinyStories (Eldan & Li 2023), HF roneneldan/TinyStories, own validation split, CDLA-Sharing-1.0"),
    HubSource("wikitext2", "Salesforce/wikitext", "WikiText-2 raw v1 (Merity et al. 2016), HF Salesforce/wikitext, "
              "one document per non-empty line, own validation split, CC BY-SA 3.0", config="wikitext-2-raw-v1"),
    HubSource("tinyshakespeare", "karpathy/tiny_shakespeare", "Tiny Shakespeare (char-rnn), HF karpathy/"
              "tiny_shakespeare (parquet export), one document per line, own validation split",
              revision="refs/convert/parquet", per_line=True),
    HubSource("owt-sample", "stanford-cs336/owt-sample", "CS336 OpenWebText sample, HF stanford-cs336/owt-sample "
              "(owt_train/owt_valid.txt.gz), documents split at <|endoftext|>",
              files={"train": "owt_train.txt.gz", "validation": "owt_valid.txt.gz"}),
]}


def offline_error(spec: HubSource, cache: Path, err: Exception, unreachable: str = "") -> ConfigError:
    first = first_line(err)
    why = f"; {unreachable}, so only the cache was read" if unreachable else ""
    return ConfigError(
        f"data.source={spec.name}: could not load {spec.repo} from the Hugging Face Hub or the cache "
        f"{cache} ({type(err).__name__}: {first}{why}). Connect once to download it, or use a local copy with "
        f"data.source=text:<path> (a .txt/.jsonl/.parquet file or a folder)")


def hub_unreachable(timeout: float = 3.0) -> str:
    """'' when a TCP connection to the Hub's endpoint opens within `timeout`, else why not.

    Without this check an offline machine waits ~25 s in the libraries' retries (1+2+4+8+8 s)
    before failing; with it, an unreachable Hub puts them in offline mode at once, which still
    loads anything already in the cache."""
    constants = require("huggingface_hub.constants", "the Hugging Face Hub")

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return ""
    except OSError as err:
        return f"{host}:{port} did not answer ({type(err).__name__})"


@contextlib.contextmanager
def offline_when_unreachable():
    """Offline mode for both libraries while the Hub cannot be reached; yields why ('' if online)."""
    constants = require("huggingface_hub.constants", "the Hugging Face Hub")

    if constants.HF_HUB_OFFLINE:
        yield ""
        return
    reason = hub_unreachable()
    if not reason:
        yield ""
        return
    try:  # file sources need only huggingface_hub; datasets keeps its own copy of the flag
        from datasets import config as datasets_config
    except ImportError:
        datasets_config = None
    modules = [m for m in (constants, datasets_config) if m is not None]
    saved = [m.HF_HUB_OFFLINE for m in modules]
    for m in modules:
        m.HF_HUB_OFFLINE = True
    try:
        yield reason
    finally:
        for m, value in zip(modules, saved):
            m.HF_HUB_OFFLINE = value


def _split_docs(texts: Iterator[str], per_line: bool) -> Iterator[str]:
    for text in texts:
        if per_line:
            yield from (line.strip() for line in text.splitlines() if line.strip())
        elif text and text.strip():
            yield text.strip()


def _dataset_splits(spec: HubSource, cache: Path) -> tuple[dict[str, Callable[[], Iterator[str]]], str]:
    datasets = require("datasets", f"data.source={spec.name}")
    with offline_when_unreachable() as unreachable:
        try:
            ds = datasets.load_dataset(spec.repo, spec.config, revision=spec.revision, cache_dir=str(cache))
        except Exception as err:  # the library raises many types (ConnectionError, DatasetNotFoundError, ...)
            raise offline_error(spec, cache, err, unreachable) from None
    missing = [s for s in spec.splits.values() if s not in ds]
    if "train" in missing:
        raise ConfigError(f"data.source={spec.name}: {spec.repo} has no train split (splits: {', '.join(ds)})")
    if spec.text_field not in ds["train"].column_names:
        raise ConfigError(f"data.source={spec.name}: no `{spec.text_field}` column in {spec.repo}")

    def reader(split: str) -> Callable[[], Iterator[str]]:
        return lambda: _split_docs((row[spec.text_field] for row in ds[split]), spec.per_line)

    splits = {ours: reader(theirs) for ours, theirs in spec.splits.items() if theirs in ds}
    fingerprint = "|".join(f"{s}:{ds[s]._fingerprint}" for s in sorted(ds))
    return splits, fingerprint


def _file_splits(spec: HubSource, cache: Path) -> tuple[dict[str, Callable[[], Iterator[str]]], str]:
    constants = require("huggingface_hub.constants", f"data.source={spec.name}")
    hf_hub_download = require("huggingface_hub", f"data.source={spec.name}").hf_hub_download
    paths = {}
    with offline_when_unreachable() as unreachable:
        for split, filename in spec.files.items():
            try:
                paths[split] = Path(hf_hub_download(spec.repo, filename, repo_type="dataset", revision=spec.revision,
                                                    cache_dir=str(cache), local_files_only=constants.is_offline_mode()))
            except Exception as err:  # LocalEntryNotFoundError, HfHubHTTPError, OSError, ...
                raise offline_error(spec, cache, err, unreachable) from None
    splits = {split: (lambda p=p: iter_text_file(p)) for split, p in paths.items()}
    return splits, "|".join(f"{s}:{p}" for s, p in sorted(paths.items()))  # paths hold the commit hash


def open_hub(spec: HubSource, cache_dir: Path) -> tuple[dict[str, Callable[[], Iterator[str]]], str]:
    """Split name -> document iterator factory, and a fingerprint of the downloaded data."""
    cache = cache_folder(cache_dir, "hf")
    return _file_splits(spec, cache) if spec.files else _dataset_splits(spec, cache)
