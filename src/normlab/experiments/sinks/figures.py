"""sinks: loss, perplexity, peak activations and norm gains (from the probes, not the checkpoints)."""
from __future__ import annotations

from normlab.report.metrics import probe_peak
from normlab.report.tables import common_rows, metric_row


def rows(groups):
    out = common_rows(groups)
    out.insert(3, metric_row("Val perplexity", lambda r: r.summary.get("val_ppl"), groups, 1))
    out += [metric_row("Peak |residual activation| over training",
                       lambda r: probe_peak(r, "massive_activations/top1/*"), groups, 1),
            metric_row("Peak attention logit over training", lambda r: probe_peak(r, "logit_stats/attn_max/*"), groups, 1),
            metric_row("Min |gain| over the norms (final)",
                       lambda r: _min(r, "norm_weights/", "/min_abs", exclude="pre_scale"), groups, 3),
            metric_row("Max |l1 - 1| of PreAffine (final)", _l1_shift, groups, 3)]
    return out


def _min(run, prefix, suffix, exclude=""):
    probes = run.probes
    values = [s[max(s)] for k, s in (probes.scalars if probes else {}).items()
              if k.startswith(prefix) and k.endswith(suffix) and exclude not in k and s]
    return min(values) if values else None


def _l1_shift(run):
    probes = run.probes
    vectors = [v for k, v in (probes.arrays[max(probes.arrays)] if probes and probes.arrays else {}).items()
               if k.startswith("norm_weights/vec/") and k.endswith("pre_scale")]
    return float(max(abs(v - 1).max() for v in vectors)) if vectors else None


def notes(groups) -> list[str]:
    return ["Validation is a fixed set of batches of the validation text; bits/byte uses that split's bytes per "
            "token, so runs with different tokenizers compare.",
            "If the data source is the shared WikiText-2 valid/test files, those are the tokenized v1 files: "
            "numbers are not comparable with published WikiText-2 results or the seed's (raw, train split)."]
