"""normlab inspect: the forward probes on a pretrained causal LM, as a positive control for the lab's detectors.

    result = inspect_model("gpt2", seq_len=64, n_seqs=100, out_dir="runs/inspect/gpt2")

Loads the model (load.py), cuts the text into windows (text.py), runs them through the model with
forward hooks on the blocks (hooks.py) and output_attentions, and hands what it saw to the lab's own
probes (attn_sinks, massive_activations, attn_entropy, act_kurtosis, resid_channels: the same reduce()
a training run calls, through a View whose attention maps are the model's probabilities). Beside them:
the uniform baseline H_T/T of the sink metric at the evaluation length, Sun et al.'s criterion as ratios,
the residual-sink channel test (top channel >= 10x the median channel) and the value drain
||v_0|| / mean_{t>0} ||v_t|| per head where the architecture exposes v. Writes inspect.json and the
report (report.py) into the output folder.
"""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, ProbeConfig
from ..probes.recorder import AttentionMap, View
from .text import N_SEQS, SEQ_LEN, parse_int, read_text, windows

PROBE_NAMES = ("attn_sinks", "massive_activations", "attn_entropy", "act_kurtosis", "resid_channels")
SUN_ABS, SUN_RATIO = 100.0, 1000.0      # Sun et al. 2024: |a| > 100 and about 1000x the median
RESID_SINK_RATIO = 10.0                 # issue 25 item 4: top channel mean |h| >= 10x the median channel
BATCH = 8                               # windows per forward


def uniform_baseline(T: int) -> float:
    """mean over causal query rows t = 0..T-1 of 1/(t+1): the mass a uniform head puts on position 0 (H_T/T)."""
    return sum(1.0 / t for t in range(1, T + 1)) / T


class _View(View):
    """A View whose attention maps are the model's own output_attentions (eager softmax probabilities)."""

    def __init__(self, model, outputs, maps):
        super().__init__(model, outputs)
        self.__dict__["attention"] = maps


def value_drain(values: list[torch.Tensor] | None) -> np.ndarray | None:
    """layers x heads: mean over windows of ||v_0|| / mean_{t>=1} ||v_t|| (per key-value head)."""
    if values is None:
        return None
    rows = []
    for v in values:  # B, T, H, D
        n = v.double().norm(dim=-1)  # B, T, H
        rows.append((n[:, 0] / n[:, 1:].mean(1)).mean(0).numpy())
    return np.stack(rows) if len({len(r) for r in rows}) == 1 else None


def _slug(model: str) -> str:
    """runs/inspect/<this>: a local folder's name, or the hub id with / as --."""
    local = Path(model).expanduser()
    name = local.resolve().name if local.exists() else model.strip("/\\ ")
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


def _check_out(out: Path) -> None:
    """Refuse an output folder that cannot be written before the model is loaded."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    above = out
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise ConfigError(f"--out {out} is under {above}, a file")
    if not os.access(above, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {above} is not writable")


def _f(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def measure(loaded, x: torch.Tensor, batch: int = BATCH) -> dict:
    """Forward the windows (no grad), then the probes' summaries and the value drain."""
    from .hooks import Tapper, taps_for

    model, cfg = loaded.model, loaded.config
    taps = taps_for(model, cfg)
    attentions: list[list[torch.Tensor]] = []   # per forward, per layer
    nll, count = 0.0, 0
    with torch.no_grad(), Tapper(model, cfg, taps) as tap:
        for chunk in x.split(batch):
            out = model(input_ids=chunk, output_attentions=True, use_cache=False)
            if not out.attentions or out.attentions[0] is None:
                raise ConfigError(f"{loaded.where}: the model returned no attention probabilities "
                                  "(its attention implementation does not support output_attentions)")
            attentions.append([a.detach().float().cpu() for a in out.attentions])
            logits = out.logits[:, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(),
                                                           reduction="sum"))
            count += chunk[:, 1:].numel()
    outputs = tap.outputs()
    per_layer = [torch.cat(chunks) for chunks in zip(*attentions)]  # each B, H, T, T
    # no raw scores: output_attentions gives probabilities only, and none of PROBE_NAMES reads scores
    maps = [AttentionMap(f"layer{i}", a, None, True) for i, a in enumerate(per_layer)]
    view = _View(model, outputs, maps)
    from ..probes import PROBES

    pcfg = ProbeConfig()
    summary = {name: PROBES[name](pcfg).reduce(view) for name in PROBE_NAMES}
    return {"summary": summary, "value_drain": value_drain(tap.values()), "loss": nll / max(count, 1),
            "taps": taps}


def derive(m: dict, T: int, threshold: float) -> dict:
    """The numbers the report and inspect.json show: per layer and the detections."""
    s = m["summary"]
    sinks, mass, ent, kurt, chan = (s["attn_sinks"], s["massive_activations"], s["attn_entropy"], s["act_kurtosis"],
                                    s["resid_channels"])
    labels = [str(v) for v in mass["labels"]]
    baseline = uniform_baseline(T)
    drain = m["value_drain"]
    layers = []
    for i, label in enumerate(labels):
        top, med = mass[f"top1/{label}"], mass[f"median/{label}"]
        ratio = top / med if med > 0 else math.inf
        layers.append({
            "layer": label,
            "sink_mass": _f(sinks.get(label, math.nan)),
            "sink_rate": _f(sinks.get(f"rate/{label}", math.nan)),
            "entropy_nats": _f(ent.get(label, math.nan)),
            "entropy_over_max": _f(np.nanmean(ent["per_head_norm"][i])) if "per_head_norm" in ent else None,
            "overload": _f(ent.get(f"overload/{label}", math.nan)),
            "top_abs_h": _f(top), "median_abs_h": _f(med), "top_over_median": _f(ratio),
            "top3_abs_h": [_f(v) for v in mass["top3"][i]],
            "top_position": int(mass["top_position"][i][0]), "top_channel": int(mass["top_channel"][i][0]),
            "sun_massive": bool(top > SUN_ABS and ratio > SUN_RATIO),
            "top_channel_mean_abs_h": _f(chan[f"top1/{label}"]),
            "channel_ratio": _f(chan[f"ratio/{label}"]),
            "top_channels": [int(c) for c in chan["top_channels"][i]] if "top_channels" in chan else None,
            "residual_sink": bool(chan[f"ratio/{label}"] >= RESID_SINK_RATIO),
            "kurtosis_resid": _f(kurt.get(f"resid/{label}", math.nan)),
            "kurtosis_attn": _f(kurt.get(f"attn/{label}", math.nan)),
            "kurtosis_mlp": _f(kurt.get(f"mlp/{label}", math.nan)),
            "value_drain": _f(drain[i].mean()) if drain is not None else None,
        })
    massive = [r["layer"] for r in layers if r["sun_massive"]]
    channels = [r["layer"] for r in layers if r["residual_sink"]]
    rate = sinks.get("rate", math.nan)
    detections = {
        "sink_rate": _f(rate),
        "sink_rate_max_layer": _f(max((r["sink_rate"] or 0.0) for r in layers)),
        "sink_mass_mean": _f(np.mean(sinks["per_head"])) if "per_head" in sinks else None,
        "uniform_baseline": baseline,
        "sink_threshold": threshold,
        "uniform_head_passes_threshold": baseline > threshold,
        "sinks": bool(rate > 0 and baseline <= threshold),
        "massive_layers": massive,
        "massive": bool(massive),
        "top_over_median_max": _f(max((r["top_over_median"] or 0.0) for r in layers)),
        "top_abs_h_max": _f(max((r["top_abs_h"] or 0.0) for r in layers)),
        "residual_sink_layers": channels,
        "channel_ratio_max": _f(max((r["channel_ratio"] or 0.0) for r in layers)),
        "value_drain_min": _f(drain.mean(1).min()) if drain is not None else None,
    }
    return {"layers": layers, "detections": detections}


def _g(x, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def summary_lines(r: dict) -> list[str]:
    """What `normlab inspect` prints when it is done."""
    d = r["detections"]
    return [f"sinks: rate {_g(d['sink_rate'])} (most in a layer {_g(d['sink_rate_max_layer'])}), mean A[t,0] "
            f"{_g(d['sink_mass_mean'])} vs uniform H_T/T {_g(d['uniform_baseline'])} at T={r['seq_len']}"
            + (" (a uniform head passes the threshold at this T)" if d["uniform_head_passes_threshold"] else ""),
            f"massive: top |h| {_g(d['top_abs_h_max'], '.4g')}, {_g(d['top_over_median_max'], '.4g')}x the median; "
            f"Sun et al. layers: {', '.join(d['massive_layers']) or 'none'}; top channel/median up to "
            f"{_g(d['channel_ratio_max'])}x; value drain down to {_g(d['value_drain_min'])}",
            f"report: {Path(r['out_dir']) / 'report.html'} (and report.md, inspect.json, PNGs)"]


def inspect_model(model: str, text: str | None = None, seq_len=64, n_seqs=100, out_dir=None, offline: bool = False,
                  echo=None) -> dict:
    """Run the forward probes on MODEL and write inspect.json, report.md, report.html and PNGs into out_dir
    (default runs/inspect/<model>). Bad input raises ConfigError (one line) before anything is written."""
    from ..rundir import write_json
    from .load import load
    from .report import write_report

    say = echo or (lambda *_: None)
    seq_len = parse_int(seq_len, "--seq-len", SEQ_LEN)
    n_seqs = parse_int(n_seqs, "--n-seqs", N_SEQS)
    txt = read_text(text)
    out = Path(out_dir) if out_dir else Path("runs") / "inspect" / _slug(model)
    _check_out(out)
    start = time.perf_counter()
    loaded = load(model, offline)
    cfg = loaded.config
    most = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if most and seq_len > most:
        raise ConfigError(f"--seq-len={seq_len} is out of range for {model}: it has {most} positions")
    x, n_tokens = windows(loaded.tokenizer, txt, seq_len, n_seqs)
    fewer = f" (fewer than --n-seqs {n_seqs}: the text has {n_tokens:,} tokens)" if x.shape[0] < n_seqs else ""
    say(f"{model}: {cfg.model_type}, {sum(p.numel() for p in loaded.model.parameters()):,} parameters; "
        f"{x.shape[0]} windows x {seq_len} tokens{fewer}")
    m = measure(loaded, x)
    d = derive(m, seq_len, ProbeConfig().sink_threshold)
    n_params = sum(p.numel() for p in loaded.model.parameters())
    result = {
        "model": model, "source": loaded.source, "where": loaded.where, "revision": loaded.revision,
        "weights_sha256": loaded.files, "model_type": cfg.model_type, "architecture": type(loaded.model).__name__,
        "parameters": n_params, "layers_tapped": m["taps"].blocks,
        "value_tap": m["taps"].value or None,
        "text": txt.origin, "text_tokens": n_tokens, "seq_len": seq_len, "n_seqs_asked": n_seqs,
        "n_seqs": int(x.shape[0]), "bos": False, "loss": _f(m["loss"]),
        "wall_s": round(time.perf_counter() - start, 2),
        "criteria": {"sink_threshold": ProbeConfig().sink_threshold, "sun_abs": SUN_ABS, "sun_ratio": SUN_RATIO,
                     "residual_sink_ratio": RESID_SINK_RATIO},
        **d,
        "per_head": {"sink_mass": m["summary"]["attn_sinks"].get("per_head"),
                     "entropy_over_max": m["summary"]["attn_entropy"].get("per_head_norm"),
                     "value_drain": m["value_drain"]},
    }
    out.mkdir(parents=True, exist_ok=True)
    figures = write_report(out, result, m)
    arrays = result.pop("per_head")
    result["per_head"] = {k: (None if v is None else np.asarray(v).tolist()) for k, v in arrays.items()}
    result["files"] = ["inspect.json", "report.md", "report.html", *figures]
    write_json(out / "inspect.json", result)
    result["out_dir"] = str(out)
    return result
