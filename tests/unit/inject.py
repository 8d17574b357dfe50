"""Deterministic divergence for tests: a module's output becomes NaN when the model sees one chosen batch.

A test must not rest on where one CPU's rounding sends a chaotic run (a no-norm model at lr 0.3
stays finite on one CPU and blows up at step 16 on another). This keys the failure to the data:
the batch of (seed, step) is a pure function of them, so the same step fails in training, in the
in-process forensics replay and in `normlab replay`, on every machine.
"""
import torch

import normlab as nl


def inject_nan(monkeypatch, cfg, step: int, module: str = "blocks.1.mlp"):
    """Patch model building so `module` outputs NaN on the training batch of `step` of `cfg`'s run."""
    from normlab.data import build_corpus

    target = build_corpus(cfg.data, cfg.model.block_size).train.batch(cfg.train.batch_size, cfg.train.seed, step).x
    real = nl.build_model

    def build(model_cfg):
        model = real(model_cfg)
        state = {"hit": False}
        model.register_forward_pre_hook(lambda m, args: state.update(hit=torch.equal(args[0].cpu(), target)))
        model.get_submodule(module).register_forward_hook(
            lambda m, args, out: out * float("nan") if state["hit"] else out)
        return model
    import normlab.model
    import normlab.training.setup

    monkeypatch.setattr(normlab.training.setup, "build_model", build)
    monkeypatch.setattr(normlab.model, "build_model", build)
