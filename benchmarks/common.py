"""Shared pieces of the benchmarks: a nanoGPT-style reference GPT and step, normlab's own step,
interleaved timing with medians, a measured matmul peak, FLOP counts and table printing.

The reference follows nanoGPT's model.py (Karpathy, github.com/karpathy/nanoGPT, Pre-LN GPT-2 with
LayerNorm, GELU MLP, learned positions, tied embeddings, flash SDPA) and its train.py step
(forward, cross-entropy, backward, clip 1.0, AdamW fused only on CUDA). It is written here, not
imported from normlab, so that it measures what a user writing nanoGPT by hand would get.
"""
from __future__ import annotations

import datetime
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import normlab as nl  # noqa: E402
from normlab.data import CharTokenizer, TokenData  # noqa: E402
from normlab.training import Trainer, accel, build_optimizer  # noqa: E402
from normlab.training.callbacks import LogFlush  # noqa: E402
from normlab.training.loop import Member, PlainEngine, run_steps  # noqa: E402
from normlab.training.metrics_log import MetricsLog  # noqa: E402
from normlab.training.setup import TrainingRun  # noqa: E402
from normlab.training.signals import StopOnInterrupt  # noqa: E402


@dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    d: int
    heads: int
    layers: int
    block: int
    batch: int


LARGE = Shape("large", 8192, 256, 8, 6, 256, 16)
SEED003 = Shape("seed003", 27, 16, 4, 8, 16, 32)


# ---- the nanoGPT-style reference --------------------------------------------------------------
class RefBlock(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(s.d, bias=False), nn.LayerNorm(s.d, bias=False)
        self.c_attn, self.c_proj = nn.Linear(s.d, 3 * s.d, bias=False), nn.Linear(s.d, s.d, bias=False)
        self.c_fc, self.mlp_proj = nn.Linear(s.d, 4 * s.d, bias=False), nn.Linear(4 * s.d, s.d, bias=False)
        self.n_head = s.heads

    def attn(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class RefGPT(nn.Module):
    def __init__(self, s: Shape):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(s.vocab, s.d), nn.Embedding(s.block, s.d)
        self.h = nn.ModuleList(RefBlock(s) for _ in range(s.layers))
        self.ln_f = nn.LayerNorm(s.d, bias=False)
        self.lm_head = nn.Linear(s.d, s.vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for p in self.parameters():
            nn.init.normal_(p, 0.0, 0.02) if p.dim() >= 2 else None

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class RefRunner:
    """nanoGPT's train.py step: the loss is read on the host only every `log_every` steps.

    `tuned=True` is the best a user gets from nanoGPT's own switches: `compile=True` and fused AdamW
    (which nanoGPT enables only on CUDA; forced here)."""

    def __init__(self, s: Shape, data: TokenData, lr: float = 1e-3, tuned: bool = False):
        torch.manual_seed(0)
        self.model, self.data, self.shape = RefGPT(s), data, s
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        other = [p for p in self.model.parameters() if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                                     lr=lr, betas=(0.9, 0.95), fused=tuned or None)  # untuned: foreach on CPU
        if tuned:
            self.model = torch.compile(self.model)
        self.step = 0

    def run(self, n: int) -> None:
        for _ in range(n):
            b = self.data.batch(self.shape.batch, 0, self.step)
            logits = self.model(b.x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), b.y.view(-1), ignore_index=-1)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.step += 1
            if self.step % 10 == 0:
                loss.item()


# ---- normlab's own training step ----------------------------------------------------------------
def normlab_config(s: Shape, kind: str, placement: str, compile_mode: str = "none", dtype: str = "float32",
                   fused: str = "auto"):
    return nl.load_config("debug", [
        f"model.vocab_size={s.vocab}", f"model.d_model={s.d}", f"model.n_head={s.heads}",
        f"model.n_layer={s.layers}", f"model.block_size={s.block}", "model.mlp=gelu", "model.pos=learned",
        "model.tie_embeddings=true", f"model.norm.kind={kind}", f"model.norm.placement={placement}",
        f"train.batch_size={s.batch}", "train.steps=1000000", "train.eval_every=1000000", "train.log_every=10",
        "train.weight_decay=0.1", f"train.compile={compile_mode}", f"train.dtype={dtype}",
        f"train.fused_optimizer={fused}", "data.batching=packed",
        # probes off: the reference has none; benchmarks/probe_overhead.py measures their cost
        "probes.every=0", "probes.grad_every=0", "probes.forensics=false"])


class NormlabRunner:
    """normlab's real training loop (`training.loop.run_steps`: schedule, batch, step, clip, buffered logging)."""

    def __init__(self, cfg, data: TokenData, device: str = "cpu"):
        torch.manual_seed(0)
        self.model = nl.build_model(cfg.model).to(device)
        step_model = accel.accelerate(self.model, cfg.train)
        self.opt = build_optimizer(self.model, cfg.train)
        corpus = type("C", (), {"train": data, "val": data})()
        self._dir = tempfile.TemporaryDirectory()  # only metrics.jsonl is written there (probes off)
        trainer = Trainer(self.model, self.opt, torch.device(device), cfg.train, step_model)
        log = MetricsLog(self._dir.name, trainer.ranks, 0.0)
        self.run_state = TrainingRun(cfg, self._dir.name, corpus, trainer, log, 0, {})
        self.step = 0

    def run(self, n: int) -> None:
        self.run_state.start_step, self.run_state.end_step = self.step, self.step + n
        run_steps(PlainEngine(self.run_state), [Member(self.run_state, [LogFlush()])], StopOnInterrupt())
        self.step += n


def step_function(runs: list):
    """`fn(step)` training `runs` (TrainingRuns from training/setup.py) one step: the plain train_step for one run
    (what a run alone uses), the stacked Engine's step for several."""
    from normlab.training.stacked_loop import Engine
    from normlab.training.step import train_step

    if len(runs) == 1:
        run = runs[0]
        return lambda s: train_step(run.trainer, run.batch(s), s)
    engine = Engine(runs)
    everyone = list(range(len(runs)))
    return lambda s: engine.step(s, everyone, lambda: None)


def synthetic_data(block: int) -> TokenData:
    """A packed stream of the embedded names corpus (both runners sample the same batches)."""
    from normlab.data.corpora import load_documents

    docs = load_documents("names")
    return TokenData(docs, CharTokenizer.fit(docs), "packed", block)


# ---- timing, peak, FLOPs --------------------------------------------------------------------------
def interleaved(runners: dict, steps: int, rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per step of each runner (objects with .run(n)); see `timed_rounds`."""
    for r in runners.values():
        r.run(warmup)
    return timed_rounds({name: (lambda r=r: r.run(steps)) for name, r in runners.items()}, rounds, per_call=steps)


def timed_rounds(fns: dict, rounds: int, calls: int = 1, per_call: int = 1) -> dict[str, float]:
    """Median seconds of each `fn()` / (calls * per_call). Rounds alternate the runners, and every
    other round runs them in reverse order, so load changes on a shared machine and the order
    (what ran just before: caches, allocator state) hit every runner alike."""
    names = list(fns)
    times = {name: [] for name in names}
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / (calls * per_call))
    return {name: statistics.median(times[name]) for name in names}


def setup_process(threads: int = 0, malloc: str = "retain") -> str:
    """Threads and allocator for the whole benchmark process (both runners share them); returns a
    line for the header. `retain` is what `normlab train` does on the CPU (train.cpu_malloc)."""
    if threads:
        torch.set_num_threads(threads)
    # every compiled runner is another model for dynamo: past the default limit of 8 it would fall back
    # to eager silently (a `normlab train` process compiles one model, so only the benchmark needs this)
    torch._dynamo.config.recompile_limit = 256
    kept = accel.retain_freed_memory() if malloc == "retain" else False
    return f"allocator: {'glibc, freed memory retained (train.cpu_malloc=retain)' if kept else 'glibc default'}"


def matmul_peak(dtype=torch.float32, n: int = 1024, device: str = "cpu", repeats: int = 10) -> float:
    """Measured FLOP/s of an n x n matmul (best of `repeats`): the denominator of MFU."""
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = math.inf
    for _ in range(repeats + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t0) / 4)
    return 2 * n ** 3 / best


def flops_per_token(s: Shape, n_params: int) -> float:
    """6 N (matmul fwd+bwd, embeddings excluded) + 12 L T d (attention scores), as in nanoGPT's
    estimate_mfu (PaLM appendix B)."""
    n_matmul = n_params - s.vocab * s.d - s.block * s.d  # tied head counted once
    n_matmul += s.vocab * s.d  # ... and the head is a matmul
    return 6 * n_matmul + 12 * s.layers * s.block * s.d


def machine() -> str:
    return (f"{accel.cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()}, {datetime.date.today().isoformat()}")


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
