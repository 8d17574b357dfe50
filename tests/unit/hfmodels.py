"""Tiny Hugging Face causal LMs saved offline for `normlab inspect` tests: random ones of three architectures
with built-in taps (GPT2Config, GPTNeoXConfig, LlamaConfig) and one on the generic taps (OPTConfig) and a GPT-2 with a planted sink and massive activation, each with
a byte-level tokenizer (256 ids, no merges), written by save_pretrained(safe_serialization=True)."""
from __future__ import annotations

from pathlib import Path

import torch

VOCAB, POSITIONS, D, HEADS, LAYERS = 256, 128, 32, 4, 2
MASSIVE_CHANNEL, MARKER_CHANNEL = 5, 0   # the planted huge channel; the channel wpe[0] marks position 0
MASSIVE = 1000.0                          # what layer 0's MLP writes on MASSIVE_CHANNEL at position 0


def byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def config(arch: str):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, OPTConfig

    if arch == "gpt2":
        return GPT2Config(n_layer=LAYERS, n_head=HEADS, n_embd=D, vocab_size=VOCAB, n_positions=POSITIONS,
                          bos_token_id=0, eos_token_id=0)
    if arch == "gpt_neox":
        return GPTNeoXConfig(num_hidden_layers=LAYERS, num_attention_heads=HEADS, hidden_size=D,
                             intermediate_size=4 * D, vocab_size=VOCAB, max_position_embeddings=POSITIONS,
                             bos_token_id=0, eos_token_id=0)
    if arch == "opt":   # no built-in taps: the generic ones (model.decoder.layers, self_attn.v_proj)
        return OPTConfig(num_hidden_layers=LAYERS, num_attention_heads=HEADS, hidden_size=D, ffn_dim=4 * D,
                         word_embed_proj_dim=D, vocab_size=VOCAB, max_position_embeddings=POSITIONS,
                         bos_token_id=0, eos_token_id=0, pad_token_id=1)
    return LlamaConfig(num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=2, hidden_size=D,
                       intermediate_size=4 * D, vocab_size=VOCAB, max_position_embeddings=POSITIONS,
                       bos_token_id=0, eos_token_id=0)


def save(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    byte_tokenizer().save_pretrained(folder)
    return folder


def random_model(arch: str, folder: Path, seed: int = 0) -> Path:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return save(AutoModelForCausalLM.from_config(config(arch)), folder)


def planted_gpt2(folder: Path, seed: int = 0) -> Path:
    """A random GPT-2 with the answer set by hand:
    - position 0 is marked: wpe[0] = 1 on MARKER_CHANNEL, every other position and token 0 there;
    - layer 0's MLP unit 0 reads that channel after ln_2 (about sqrt(D) at position 0, |.| < 1 elsewhere) with
      a bias that keeps it off elsewhere, and writes MASSIVE on MASSIVE_CHANNEL: a massive activation at the
      first token, in one fixed channel, from layer 0 on (as Sun et al. find in GPT-2);
    - layer 1's queries are one constant vector (weights 0, bias 1) and its keys read MASSIVE_CHANNEL, so every
      query of every head attends to position 0: a sink in every head of layer 1; its values ignore that
      channel, so v_0 is small (a value drain)."""
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config("gpt2"))
    t = model.transformer
    with torch.no_grad():
        t.wte.weight[:, MARKER_CHANNEL] = 0
        t.wpe.weight[:, MARKER_CHANNEL] = 0
        t.wpe.weight[0, MARKER_CHANNEL] = 1.0
        mlp = t.h[0].mlp
        gain = 10.0
        mlp.c_fc.weight[:, 0] = 0
        mlp.c_fc.weight[MARKER_CHANNEL, 0] = gain          # Conv1D weights are (in, out)
        mlp.c_fc.bias[0] = -gain * 2.0
        pre = gain * ((D - 1) ** 0.5 - 2.0)                 # unit 0's input at position 0 (ln_2 of a one-hot spike)
        mlp.c_proj.weight[0, :] = 0
        mlp.c_proj.weight[0, MASSIVE_CHANNEL] = MASSIVE / pre
        attn = t.h[1].attn.c_attn                          # columns: [q | k | v], D each
        attn.weight[:, :D] = 0
        attn.bias[:D] = 1.0
        attn.weight[:, D:2 * D] = 0
        attn.weight[MASSIVE_CHANNEL, D:2 * D] = 4.0
        attn.bias[D:2 * D] = 0
        attn.weight[MASSIVE_CHANNEL, 2 * D:] = 0
    return save(model, folder)
