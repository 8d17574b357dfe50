"""Fixture experiments with probe data for the report tests (no training).

The probe keys, shapes and labels come from one real probe pass of a 4-layer, 4-head debug model
(every registered forward probe, and the grad_norms tracker's keys), so the fixture follows the
probes as they change; the values are scaled per variant, seed and step so the figures differ.
"""
import functools

import numpy as np

from runfixtures import decaying, write_experiment, write_run

PROBE_STEPS = (0, 100, 200, 300)


@functools.lru_cache(maxsize=1)
def probe_template() -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(scalars without the 'probe/' prefix, arrays) of one probe pass at init."""
    import torch

    from normlab.config import load_config
    from normlab.model import build_model
    from normlab.probes import PROBES, flatten, probe_model
    from normlab.probes.grad_norms import GradNormTracker

    torch.manual_seed(0)
    cfg = load_config("debug", ["model.vocab_size=27", "model.n_layer=4", "model.n_head=4"])
    model = build_model(cfg.model)
    forward = [n for n, cls in PROBES.items() if cls.stage == "forward"]
    scalars, arrays = flatten(probe_model(model, torch.randint(0, 27, (4, 16)), forward, cfg.probes))
    scalars = {k[len("probe/"):]: v for k, v in scalars.items()}
    for i, key in enumerate(GradNormTracker(model).keys):
        scalars[f"grad_norms/{key}"] = 0.5 + 0.4 * i
    return scalars, arrays


def _scaled(value, factor):
    """Float arrays scaled, with a fixed pattern across cells (heatmaps with structure); integer arrays
    (non-finite counts: zero in a healthy run) and label arrays as they are."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        pattern = 1 + 0.3 * np.sin(np.arange(value.size).reshape(value.shape) * 1.7 + factor)
        return value * factor * pattern
    return value


def probe_steps(factor_of) -> dict[int, tuple[dict[str, float], dict[str, np.ndarray]]]:
    """{step: (scalars, arrays)} for every probe step, values scaled by factor_of(step)."""
    scalars, arrays = probe_template()
    out = {}
    for step in PROBE_STEPS:
        f = factor_of(step)
        out[step] = ({k: (v if "nan_counts" in k else v * f) for k, v in scalars.items()},
                     {k: _scaled(v, f) for k, v in arrays.items()})
    return out


def write_probed_experiment(root, name: str, variants: list[str], seeds, level_of=None, config_of=None, **extra):
    """An experiment folder of len(variants) x len(seeds) runs with probe scalars and probes/step_N.npz."""
    from normlab.rundir import write_npz

    rng = np.random.default_rng(0)
    runs = []
    for i, variant in enumerate(variants):
        level = level_of(variant) if level_of else 2.0 + 0.02 * i
        for seed in seeds:
            probes = probe_steps(lambda step, i=i, seed=seed: 1.0 + 0.1 * i + 0.01 * seed + step / 600)
            runs.append(write_run(root, variant, seed, decaying(level, seed, rng=rng, noise=0.02),
                                  val=level + 0.1 + 0.01 * seed, samples=["emma", "liam", "noah"],
                                  probes={s: sc for s, (sc, _) in probes.items()},
                                  config=config_of(variant) if config_of else None,
                                  summary={"data": {"train": {"n_docs": 4647, "n_tokens": 34000}}}))
            for step, (_, arrays) in probes.items():
                write_npz(root / runs[-1]["dir"] / "probes" / f"step_{step:06d}.npz", arrays)
    return write_experiment(root, name, variants, runs, list(seeds), **extra)
