"""Typed configuration: RunConfig -> ModelConfig (NormConfig, AttentionConfig), DataConfig, TrainConfig,
ProbeConfig.

Every field has a default and a one-line docstring (the string literal under it), which
`normlab train --help-config` prints. Choices among registries (norm kinds, placements) are
checked in `validate()` against the live registries, so a new variant needs no schema edit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal


class ConfigError(ValueError):
    """A configuration problem, reported with the dotted key, its source and what is allowed."""


@dataclass(frozen=True)
class Range:
    """The allowed range of a number field, checked at load (Annotated[int, Range(ge=1)]); the message names it."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def text(self) -> str:
        lo = f"[{_num(self.ge)}" if self.ge is not None else (f"({_num(self.gt)}" if self.gt is not None else "(-inf")
        hi = f"{_num(self.le)}]" if self.le is not None else (f"{_num(self.lt)})" if self.lt is not None else "inf)")
        return f"{lo}, {hi}"

    def check(self, value, path: str, source: str) -> None:
        ok = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
              and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if not ok:
            raise ConfigError(f"{path}={value!r} ({source}) is out of range; allowed: {self.text()}")


def _num(x: float) -> str:
    """A bound as a reader writes it: 1024, 2^20, 10^9, 1e-08, 1e+30."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e20:
        x = int(x)
    if isinstance(x, float):
        return f"{x:g}"
    if x >= 1 << 20 and (x & (x - 1)) == 0:
        return f"2^{x.bit_length() - 1}"
    if x >= 10 ** 6 and str(x).rstrip("0") == "1":
        return f"10^{len(str(x)) - 1}"
    return str(x)




@dataclass
class NormConfig:
    kind: str = "rmsnorm"
    """norm kind (registry `normlab list norms`): what the normalization computes"""
    placement: str = "pre"
    """placement (registry `normlab list placements`): where the norms sit in the block"""
    final: Literal["auto", "always", "never"] = "auto"
    """norm before the output head: auto = the placement's rule (pre: yes, post/none: no)"""
    eps: Annotated[float, Range(gt=0, le=1)] = 1e-5
    """epsilon inside the square root (LayerNorm / RMSNorm)"""
    affine: bool = True
    """learnable per-channel gain"""
    bias: bool = False
    """learnable per-channel bias (LayerNorm, DyT)"""
    options: dict = field(default_factory=dict)
    """kind-specific knobs, checked by the norm kind itself (e.g. dyt: {alpha_attn: 0.8})"""
    mixln_post_frac: Annotated[float, Range(ge=0, le=1)] = 0.25
    """mixln: the first floor(frac * n_layer) blocks are post-norm, the rest pre-norm (Li et al. 2024)"""
    hybrid_first_pre: bool = False
    """hybrid: block 0 in pre-norm (with its q/k/v norms kept): HybridNorm* (Zhuo et al. 2025)"""


@dataclass
class AttentionConfig:
    qk_norm: bool = False
    """normalize q and k per head (RMSNorm over the head dim) before the dot product"""
    logit_clamp: Annotated[float, Range(ge=0, le=1e9)] = 0.0
    """hard clamp of attention logits to [-c, c]; 0 = off (seed 001 uses 30)"""
    logit_softcap: Annotated[float, Range(ge=0, le=1e9)] = 0.0
    """soft cap c*tanh(s/c) on attention logits; 0 = off (Gemma 2 uses 50)"""
    qkv_norm: bool = False
    """normalize q, k and v per head after their projections with model.norm.kind (Rybakov et al. 2024)"""
    gate: Literal["none", "headwise", "elementwise"] = "none"
    """output gate sdpa(q,k,v) * sigmoid(x W_g) before W_o: one per head or per channel (Qiu et al. 2025)"""
    softmax: Literal["softmax", "softpick", "sigmoid", "relu"] = "softmax"
    """attention weights: softmax; softpick relu(e^s-1)/sum|e^s-1| (rows need not sum to 1); sigmoid(s - log n);
    relu(s) / n (Guo et al. 2024), n = the keys a row sees"""
    sink: bool = False
    """a learned per-head sink logit in the softmax denominator (gpt-oss): rows sum to less than 1"""
    qk_scale: Annotated[float, Range(ge=0, le=1e8)] = 0.0
    """kappa transplant (Wortsman et al. 2023, arXiv 2309.14322 Fig. 10): q and k per head set to
    sqrt(kappa) * z / rms(z), no learned gain, so E[q^2] = E[k^2] = kappa; 0 = off"""


@dataclass
class NGPTConfig:
    alpha_init: Annotated[float, Range(gt=0, le=10)] = 0.05
    """initial eigen learning rate alpha_A = alpha_M (= alpha_C for cross-attention) of the hypersphere step"""
    s_qk_init: Annotated[float, Range(gt=0, le=1e4)] = 1.0
    """initial per-channel scale of the normalized q and k"""
    s_uv_init: Annotated[float, Range(gt=0, le=1e4)] = 1.0
    """initial per-channel scale of the MLP pre-activations (times sqrt(d_model), as in NVIDIA/ngpt)"""
    s_z_init: Annotated[float, Range(gt=0, le=1e4)] = 1.0
    """initial per-token scale of the output logits"""
    base_scale: Annotated[float, Range(ge=0, le=10)] = 0.0
    """storage scale of alpha, s_qk, s_z (the eigen-LR trick); 0 = 1/sqrt(d_model) as in NVIDIA/ngpt"""


@dataclass
class ModelConfig:
    arch: Literal["gpt", "ngpt"] = "gpt"
    """block family: gpt = norm kind x placement blocks; ngpt = hypersphere blocks (Loshchilov et al. 2024)"""
    encoder_layers: Annotated[int, Range(ge=0, le=1024)] = 0
    """encoder blocks; > 0 makes an encoder-decoder (n_layer decoder blocks with cross-attention)"""
    vocab_size: Annotated[int, Range(ge=0, le=1 << 21)] = 0
    """vocabulary size; 0 = take it from the tokenizer"""
    d_model: Annotated[int, Range(ge=1, le=1 << 16)] = 64
    """residual stream width"""
    n_head: Annotated[int, Range(ge=1, le=1024)] = 4
    """attention heads"""
    n_layer: Annotated[int, Range(ge=1, le=1024)] = 4
    """transformer blocks"""
    block_size: Annotated[int, Range(ge=2, le=1 << 20)] = 64
    """context length in tokens"""
    mlp: Literal["relu", "gelu", "swiglu", "relu2"] = "gelu"
    """MLP activation"""
    mlp_ratio: Annotated[float, Range(gt=0, le=64)] = 4.0
    """MLP hidden width / d_model (swiglu uses 2/3 of it per branch, rounded)"""
    pos: Literal["learned", "rope", "none"] = "learned"
    """position encoding"""
    rope_base: Annotated[float, Range(gt=1, le=1e9)] = 10000.0
    """RoPE theta"""
    bias: bool = False
    """biases in linear layers"""
    tie_embeddings: bool = False
    """share the token embedding with the output head"""
    init_std: Annotated[float, Range(gt=0, le=10)] = 0.02
    """std of the normal init of every linear and embedding weight"""
    embed_init_std: Annotated[float, Range(ge=0, le=10)] = 0.0
    """std of the normal init of the embedding tables (tokens, learned positions); 0 = model.init_std (PyTorch's nn.Embedding default, which makemore keeps, is 1.0)"""
    resid_init_scale: Annotated[float, Range(gt=0, le=100)] = 1.0
    """extra factor on the init std of residual output projections (seed 001 uses 0.01)"""
    depth_scaled_init: bool = False
    """divide the residual-projection init std by sqrt(2 * n_layer) (GPT-2)"""
    out_logit_softcap: Annotated[float, Range(ge=0, le=1e9)] = 0.0
    """soft cap c*tanh(z/c) on output logits; 0 = off (Gemma 2 uses 30)"""
    resid_clip: Annotated[float, Range(ge=0, le=1e9)] = 0.0
    """clip the residual stream to [-c, c] after every block; 0 = off (Qiu et al. 2026 try 10, 100, 1000)"""
    norm: NormConfig = field(default_factory=NormConfig)
    """normalization: kind x placement"""
    attn: AttentionConfig = field(default_factory=AttentionConfig)
    """attention options and stabilizers"""
    ngpt: NGPTConfig = field(default_factory=NGPTConfig)
    """nGPT knobs (used when arch=ngpt)"""


@dataclass
class DataConfig:
    source: str = "names"
    """corpus (`normlab list sources`): names, tinystories, wikitext2, tinyshakespeare, owt-sample, text:<path>"""
    task: Literal["lm", "reverse", "sort"] = "lm"
    """lm: next-token prediction; reverse / sort: seq2seq, map each document to its reversal / its sorted letters"""
    val_source: str = ""
    """validation corpus; empty = the source's own validation split, else a held-out fraction (val_frac)"""
    tokenizer: Literal["char", "bpe"] = "char"
    """char: one id per character; bpe: byte-level BPE trained on the train split (HF `tokenizers`)"""
    bpe_vocab_size: Annotated[int, Range(ge=257, le=1 << 20)] = 4096
    """BPE vocabulary size, special tokens included"""
    special_tokens: list = field(default_factory=lambda: ["<|endoftext|>"])
    """BPE special tokens; the first one is the document boundary"""
    cache_dir: str = "~/.cache/normlab"
    """downloads, trained tokenizers and token memmaps (reused while the text and settings are unchanged)"""
    max_bytes: Annotated[int, Range(ge=0, le=1 << 50)] = 0
    """read at most this many bytes of text per split (e.g. a slice of a large corpus); 0 = all"""
    train_max_bytes: Annotated[int, Range(ge=0, le=1 << 50)] = 0
    """read at most this many bytes of the train split only (0 = data.max_bytes's cap): a training-set-size axis
    whose validation split stays the same"""
    batching: Literal["doc", "packed"] = "packed"
    """`doc`: each row is one document with boundary tokens; `packed`: random windows of the stream"""
    val_frac: Annotated[float, Range(gt=0, lt=1)] = 0.1
    """fraction of documents held out for validation when there is no validation split (fixed by split_seed)"""
    split_seed: Annotated[int, Range(ge=0, le=(1 << 31) - 1)] = 1234
    """seed of the train/val split"""


@dataclass
class TrainConfig:
    steps: Annotated[int, Range(ge=1, le=10 ** 9)] = 200
    """optimizer steps"""
    batch_size: Annotated[int, Range(ge=1, le=1 << 20)] = 16
    """sequences per step"""
    lr: Annotated[float, Range(gt=0, le=100)] = 1e-3
    """peak learning rate"""
    optimizer: Literal["adam", "adamw", "sgd", "muon"] = "adamw"
    """optimizer: adam / adamw; sgd (momentum, nesterov keys); muon (Newton-Schulz-orthogonalized momentum on the
    blocks' 2-D matrices, AdamW with betas / adam_eps on embeddings, head, gains and biases)"""
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9
    """sgd: momentum coefficient (torch.optim.SGD, dampening 0); 0 = plain SGD"""
    nesterov: bool = False
    """sgd: Nesterov momentum (needs momentum > 0)"""
    muon_momentum: Annotated[float, Range(ge=0, lt=1)] = 0.95
    """muon: momentum of the matrices' update (torch.optim.Muon's default)"""
    muon_nesterov: bool = True
    """muon: Nesterov momentum for the matrices"""
    muon_ns_steps: Annotated[int, Range(ge=1, le=99)] = 5
    """muon: Newton-Schulz iterations that orthogonalize each matrix's update"""
    muon_lr_adjust: Literal["match_rms_adamw", "original"] = "match_rms_adamw"
    """muon: a matrix's LR = train.lr x 0.2 sqrt(max(out, in)) (match_rms_adamw, Liu et al. 2025: train.lr and
    weight_decay mean what they mean for AdamW) or x sqrt(max(1, out / in)) (original, Keller Jordan)"""
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    """Adam betas [beta1, beta2]"""
    adam_eps: Annotated[float, Range(gt=0, le=1)] = 1e-8
    """Adam epsilon"""
    weight_decay: Annotated[float, Range(ge=0, le=10)] = 0.0
    """weight decay of the blocks' matrices and the head, never of gains, biases or embeddings: decoupled for adamw
    and muon, L2 (added to the gradient, torch.optim.SGD) for sgd; adam applies none"""
    weight_decay_mode: Literal["coupled", "independent"] = "coupled"
    """coupled: decay lr_t * wd per step (torch AdamW); independent: wd * lr_t / lr, not scaled by the peak LR"""
    qk_clip: Annotated[float, Range(ge=0, le=1e9)] = 0.0
    """QK-Clip threshold tau: after each step, rescale W_q, W_k of heads whose max logit > tau (Kimi K2); 0 = off"""
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    """LR schedule after warmup: constant, linear decay to 0, cosine to min_lr_frac * lr"""
    warmup_steps: Annotated[int, Range(ge=0, le=10 ** 9)] = 0
    """linear warmup steps"""
    min_lr_frac: Annotated[float, Range(ge=0, le=1)] = 0.0
    """final LR as a fraction of lr (cosine)"""
    grad_clip: Annotated[float, Range(ge=0, le=1e9)] = 1.0
    """clip the global gradient norm; 0 = off"""
    z_loss: Annotated[float, Range(ge=0, le=100)] = 0.0
    """weight of the z-loss mean(logsumexp(z)^2) (PaLM uses 1e-4); 0 = off"""
    seed: Annotated[int, Range(ge=0, le=(1 << 31) - 1)] = 0
    """seed of init, data order and sampling: one seed, one bit-identical CPU run"""
    log_every: Annotated[int, Range(ge=1, le=10 ** 6)] = 10
    """read the buffered per-step losses every N steps (the step's only host sync; every step is still written)"""
    eval_every: Annotated[int, Range(ge=1, le=10 ** 9)] = 100
    """validation every N steps (and at the end)"""
    eval_batches: Annotated[int, Range(ge=1, le=100_000)] = 8
    """validation batches (fixed)"""
    ckpt_every: Annotated[int, Range(ge=0, le=10 ** 9)] = 0
    """checkpoint every N steps; 0 = only at the end"""
    loss_bound: Annotated[float, Range(ge=0, le=1e30)] = 0.0
    """stop as diverged when the training loss exceeds this; 0 = only on NaN/inf"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """device"""
    threads: Annotated[int, Range(ge=0, le=4096)] = 0
    """torch CPU threads; 0 = leave torch's default"""
    compile: Literal["auto", "none", "norms", "model"] = "auto"
    """torch.compile: auto = the whole model where compiling paid at the measured shape nearest the run and the run is long enough to repay it (steps x members past that shape's break-even measured on this CPU model, training/compile_costs.json; an unmeasured CPU takes the most cautious measured row; eager elsewhere and on GPUs); none = eager; norms = each norm module (fused kernels, seconds to build); model = the whole model"""
    stack_placements: bool = False
    """stacked runs that differ only in a generic placement (pre, post, none, peri, reorder) share one stack, each slot a member lacks masked to the identity (training/stacked_mix.py; bitwise what a stack of its own placement gives); off by default: measured no faster on CPU, where the union's extra norms cost what a second stack costs (benchmarks/RESULTS.md)"""
    compile_cache: str = "~/.cache/normlab/inductor"
    """persistent inductor cache (FX graphs, kernels) shared by runs and processes; '' = torch's default"""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """forward compute dtype: bfloat16 = autocast (matmuls in bf16, each weight cast once per forward; weights, grads, optimizer stay float32; on the CPU attention and the loss run in float32: faster there); the GPU path, and on CPUs with AMX-BF16 (train.cpu_bf16); the numbers differ from float32. Measured on an AMX Xeon, 2 threads, a step vs float32: 1.9x at d 256 x 6 layers (V 8192, T 256, B 16), 1.6x at d 128 x 4, 1.25x at proxies' d 128, T 64; a stack of 5: 2.2x, 1.7x, 1.6x; slower at the other shipped experiments' widths, d 16-32 (0.5-1.0x: the casts outweigh the matmuls) (benchmarks/bf16.py, RESULTS.md)"""
    cpu_bf16: Literal["amx", "force"] = "amx"
    """train.dtype=bfloat16 on a CPU: amx = only where the CPU has AMX-BF16 (refused elsewhere: there bf16 matmuls run at about half the float32 speed); force = run it anyway (numerics checks)"""
    fused_optimizer: Literal["auto", "fused", "foreach", "forloop"] = "auto"
    """Adam implementation: auto = fused (one kernel over all params) where the device has it, else foreach"""
    cpu_malloc: Literal["retain", "default"] = "retain"
    """CPU runs: retain = glibc keeps freed tensor memory for reuse (no re-faulting pages each step); default = as is"""
    parallel: Literal["ddp", "fsdp"] = "ddp"
    """under torchrun: ddp = full replicas, gradients all-reduced; fsdp = FSDP2 fully_shard (sharded params)"""
    trackers: list[Literal["tensorboard", "trackio", "wandb"]] = field(default_factory=list)
    """experiment trackers that also get every metrics.jsonl record and the config, e.g. [tensorboard, wandb]"""
    print_every: Annotated[int, Range(ge=0, le=10 ** 9)] = 0
    """log lines (stdout not a terminal): one every N steps, at the next log flush, and one per eval; 0 = ~20 per run"""


@dataclass
class ProbeConfig:
    every: Annotated[int, Range(ge=0, le=10 ** 9)] = 100
    """run the forward probes every N steps (and at step 0) on a fixed validation batch; 0 = off"""
    names: list = field(default_factory=lambda: ["all"])
    """probes to run (registry `normlab list probes`); [all] = every registered probe"""
    batch_size: Annotated[int, Range(ge=1, le=4096)] = 8
    """sequences in the fixed probe batch (drawn once from the validation split)"""
    overload_threshold: Annotated[float, Range(gt=0, le=1)] = 0.75
    """a head is in entropic overload when its entropy is above this fraction of the maximum"""
    grad_every: Annotated[int, Range(ge=0, le=10 ** 9)] = 1
    """grad_norms every N steps, read from .grad before clipping (buffered: no extra host sync); 0 = off"""
    update_every: Annotated[int, Range(ge=0, le=10 ** 9)] = 100
    """update probes (||dtheta||/||theta||, Adam second moments per layer) every N steps; 0 = off"""
    sink_threshold: Annotated[float, Range(gt=0, le=1)] = 0.3
    """a head is a sink head when its mean attention to position 0 exceeds this (Gu et al. 2024: 0.3)"""
    forensics: bool = True
    """on divergence, replay from the last good state, find the first bad layer, write forensics.json"""
    snapshot_every: Annotated[int, Range(ge=0, le=10 ** 9)] = 100
    """keep an in-memory last-good state every N steps (at least train.log_every) for forensics"""
    act_bound: Annotated[float, Range(ge=0, le=1e30)] = 0.0
    """forensics: an |activation| above this counts as bad; 0 = only non-finite values"""


@dataclass
class SampleConfig:
    n: Annotated[int, Range(ge=0, le=10_000)] = 5
    """samples written to samples.txt at the end"""
    temperature: Annotated[float, Range(ge=0, le=100)] = 0.5
    """softmax temperature"""
    max_new_tokens: Annotated[int, Range(ge=0, le=100_000)] = 0
    """tokens per sample; 0 = block_size"""


@dataclass
class RunConfig:
    name: str = "run"
    """run name (directory name under out_dir)"""
    out_dir: str = "runs"
    """parent directory of run directories"""
    model: ModelConfig = field(default_factory=ModelConfig)
    """model architecture"""
    data: DataConfig = field(default_factory=DataConfig)
    """corpus, tokenizer and batching"""
    train: TrainConfig = field(default_factory=TrainConfig)
    """optimization"""
    sample: SampleConfig = field(default_factory=SampleConfig)
    """generation at the end of the run"""
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    """what is recorded inside the model during training, and divergence forensics"""
