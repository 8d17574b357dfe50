"""Load a pretrained Hugging Face causal LM and its tokenizer: safetensors only, no remote code.

A MODEL is a local folder (config.json + *.safetensors + tokenizer files, as save_pretrained writes them)
or a hub id (gpt2, EleutherAI/pythia-70m). transformers is imported here, inside the functions, so
`import normlab` never imports it (pip install 'normlab[hf]'). A checkpoint that has only pickle weights
(pytorch_model.bin, *.pt, *.ckpt, *.pth) is refused before anything is read: unpickling runs code.
Offline (HF_HUB_OFFLINE=1 or --offline) a hub id loads from the local cache only (local_files_only).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ConfigError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# families AutoModelForCausalLM maps to an LM-head class although they are bidirectional encoders
ENCODERS = {"bert", "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "electra", "ernie", "data2vec-text",
            "rembert", "roc_bert", "megatron-bert", "bert-generation", "xmod"}


@dataclass
class Loaded:
    model: object          # a transformers PreTrainedModel, eval mode, float32, eager attention
    tokenizer: object
    config: object
    source: str            # "local" or "hub"
    where: str             # the folder, or the hub id
    files: dict[str, str] = field(default_factory=dict)  # weight file -> sha256
    revision: str | None = None                           # the hub commit of the cached snapshot


def _looks_like_path(model: str) -> bool:
    """A path, not a hub id: absolute, ./ ../ ~, a trailing slash, a Windows drive, or more than one slash."""
    return (model.startswith(("/", "./", "../", "~", "\\")) or model.endswith(("/", "\\")) or model in (".", "..")
            or (len(model) > 1 and model[1] == ":") or model.count("/") > 1)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def check_folder(folder: Path) -> dict[str, str]:
    """Refuse what cannot be loaded safely; return {weight file: sha256}."""
    if not folder.exists():
        raise ConfigError(f"{folder}: no such directory (a local model is a folder with config.json and "
                          "*.safetensors; a hub id looks like gpt2 or EleutherAI/pythia-70m)")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the folder save_pretrained wrote (config.json, *.safetensors)")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"{folder} has no config.json: not a Hugging Face model folder")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise ConfigError(f"{folder} has only pickle weights ({', '.join(pickles[:3])}); normlab loads safetensors "
                              "only, because unpickling runs code (convert them with safetensors first)")
        raise ConfigError(f"{folder} has no *.safetensors weights")
    return {p.name: _sha256(p) for p in weights}


def _causal_check(config, where: str) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", "")
    if (kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False)
            or (kind in ENCODERS and not getattr(config, "is_decoder", False))):
        raise ConfigError(f"{where} is a {kind or 'model of unknown type'}, not a causal (decoder-only) language "
                          "model; normlab inspect reads GPT-2, GPT-NeoX/Pythia, Llama-family and other "
                          "AutoModelForCausalLM models")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


@contextlib.contextmanager
def _quiet():
    """transformers' info/warning lines and its weight-loading progress bar off (a refusal is one line on
    stderr), restored afterwards."""
    from transformers.utils import logging as tlog

    level, bar = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bar:
            tlog.enable_progress_bar()


def load(model: str, offline: bool = False) -> Loaded:
    """The model (eval, float32, attn_implementation="eager" so attention probabilities exist) and tokenizer."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ConfigError("normlab inspect needs transformers: pip install 'normlab[hf]'") from None
    with _quiet():
        return _load(model, offline)


def _load(model: str, offline: bool) -> Loaded:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    offline = offline or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    local = Path(model).expanduser()
    files: dict[str, str] = {}
    if local.exists() or _looks_like_path(model):
        files = check_folder(local)
        where, source, only_local = str(local), "local", True
    else:
        where, source, only_local = model, "hub", offline
    kw = dict(trust_remote_code=False, local_files_only=only_local)
    try:
        config = AutoConfig.from_pretrained(where, **kw)
    except (OSError, ValueError, KeyError) as err:
        text = _first_line(err)
        hint = (" (offline: only models already in the Hugging Face cache load)" if only_local and source == "hub"
                else " (no network? --offline loads a hub id from the local cache)" if "connect" in text else "")
        raise ConfigError(f"{where}: cannot read its config: {text}{hint}") from None
    _causal_check(config, where)
    try:
        net = AutoModelForCausalLM.from_pretrained(where, config=config, use_safetensors=True,
                                                   attn_implementation="eager", dtype="float32", **kw)
    except (OSError, ValueError) as err:
        text = _first_line(err)
        if source == "hub" and ("safetensors" in text or ".bin" in text):
            raise ConfigError(f"{where}: no safetensors weights on the hub; normlab loads safetensors only, "
                              f"because unpickling runs code ({text})") from None
        raise ConfigError(f"{where}: cannot load the model: {text}") from None
    try:
        tok = AutoTokenizer.from_pretrained(where, **kw)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as err:  # ImportError: sentencepiece missing
        raise ConfigError(f"{where}: no usable tokenizer ({_first_line(err)})") from None
    net.eval()
    revision = None
    if source == "hub":  # the snapshot it loaded: its commit, and the weights' hashes (EleutherAI/pythia#205)
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(where, "config.json")
        if isinstance(cached, str):
            snapshot = Path(cached).parent
            revision = snapshot.name
            files = {p.name: _sha256(p) for p in sorted(snapshot.glob("*.safetensors"))}
    return Loaded(net, tok, config, source, where, files, revision)
