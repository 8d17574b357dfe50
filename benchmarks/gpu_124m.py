"""GPT-2 124M shape on one GPU: tokens/s and MFU against a measured bf16 matmul peak.

    python benchmarks/gpu_124m.py                       # bf16 autocast + TF32 + flash SDPA + compile
    python benchmarks/gpu_124m.py --compile none --batch 8 --steps 30

Shape: vocab 50304 (GPT-2's 50257 padded to a multiple of 128, as nanoGPT does), d 768, 12 heads,
12 layers, block 1024, tied embeddings, GELU, learned positions, rmsnorm / pre unless --kind.
Runs normlab's real loop (`training.loop.run_steps`) on random tokens; the first `--warmup` steps (compile) are
not timed. MFU = (6N + 12 L T d) * tokens/s / peak, with the peak measured on a 8192^3 bf16
matmul here (the datasheet's dense bf16 figure is printed beside it for comparison).
Not run in the CPU-only session that wrote it: the numbers in RESULTS.md come from a GPU session.
"""
from __future__ import annotations

import argparse
import time

import torch

from common import NormlabRunner, Shape, flops_per_token, matmul_peak, normlab_config
from normlab.data import TokenData
from normlab.data.batching import Batch
from normlab.data.tokenizer import CharTokenizer


class RandomTokens(TokenData):
    """Uniform random token windows on the device (the data path is not what is measured)."""

    def __init__(self, vocab: int, block: int, device: str):
        self.vocab, self.block_size, self.device, self.mode = vocab, block, device, "packed"
        self.tok = CharTokenizer.fit(["ab"])

    def batch(self, batch_size, seed, step):
        g = torch.Generator(device=self.device).manual_seed(seed * 1_000_003 + step)
        rows = torch.randint(self.vocab, (batch_size, self.block_size + 1), generator=g, device=self.device)
        return Batch(rows[:, :-1].contiguous(), rows[:, 1:].contiguous(), torch.arange(batch_size, device=self.device))

    def batch_index(self, batch_size, seed, step):
        raise NotImplementedError("single-process benchmark")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--kind", default="rmsnorm")
    ap.add_argument("--compile", default="model", choices=["none", "norms", "model"])
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--cpu-smoke", action="store_true", help="a tiny shape on the CPU: checks the script, measures nothing")
    args = ap.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_124m.py needs a CUDA device (this benchmark is for a GPU session); --cpu-smoke checks it on the CPU")
    shape = (Shape("cpu-smoke", 512, 64, 4, 2, 64, 4) if args.cpu_smoke
             else Shape("gpt2-124m", 50304, 768, 12, 12, 1024, args.batch))
    cfg = normlab_config(shape, args.kind, "pre", args.compile, args.dtype)
    cfg.train.device = device
    torch.backends.cuda.matmul.allow_tf32 = True
    runner = NormlabRunner(cfg, RandomTokens(shape.vocab, shape.block, device), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    runner.run(args.warmup)
    sync()
    t0 = time.perf_counter()
    runner.run(args.steps)
    sync()
    sec = (time.perf_counter() - t0) / args.steps
    peak = matmul_peak(torch.bfloat16, n=8192 if device == "cuda" else 512, device=device)
    n_params = sum(p.numel() for p in runner.model.parameters())
    tps = shape.batch * shape.block / sec
    mfu = flops_per_token(shape, n_params) * tps / peak
    print(f"device: {torch.cuda.get_device_name() if device == 'cuda' else 'cpu (smoke run)'}, torch {torch.__version__}")
    print(f"params {n_params / 1e6:.1f}M, batch {shape.batch} x {shape.block}, {args.dtype}, compile={args.compile}")
    print(f"bf16 matmul peak (8192^3, measured): {peak / 1e12:.0f} TFLOP/s "
          "(H100 SXM datasheet: 989 dense; H200: 989)")
    print(f"{sec * 1e3:.1f} ms/step, {tps:,.0f} tokens/s, MFU {100 * mfu:.1f}% of the measured peak")


if __name__ == "__main__":
    main()
