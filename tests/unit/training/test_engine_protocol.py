"""Both engines satisfy the Protocols the loop and the callbacks are written against (training/engine.py):
the plain engine and its Trainer, the stacked engine and each member's MemberTrainer."""
from normlab.training.engine import RunTrainer, StepEngine
from normlab.training.loop import PlainEngine
from normlab.training.setup import setup
from normlab.training.stacked_loop import Engine, MemberTrainer

from debugmodels import run_config

STEPS = ["train.steps=2", "train.eval_every=2", "train.eval_batches=1", "sample.n=0"]


def test_the_plain_engine_and_its_trainer_satisfy_the_protocols(tmp_path):
    run = setup(run_config("debug", tmp_path, "plain", 0, *STEPS), tmp_path / "plain", False, False)
    assert isinstance(PlainEngine(run), StepEngine)
    assert isinstance(run.trainer, RunTrainer)


def test_the_stacked_engine_and_its_member_trainers_satisfy_the_protocols(tmp_path):
    runs = [setup(run_config("debug", tmp_path, f"m{s}", s, *STEPS), tmp_path / f"m{s}", False, False)
            for s in (0, 1)]
    engine = Engine(runs)
    assert isinstance(engine, StepEngine)
    for k, run in enumerate(runs):     # as stacked_loop._train_group hands them to the callbacks
        run.trainer = MemberTrainer(run.trainer, engine, k)
    assert all(isinstance(r.trainer, RunTrainer) for r in runs)
    assert runs[1].trainer.model is not runs[0].trainer.model     # each member reads its own plain model


def test_an_object_without_the_trackers_is_not_a_run_trainer(tmp_path):
    """The Protocol is a check, not a label: what lacks gradient_tracker / update_tracker fails it."""
    run = setup(run_config("debug", tmp_path, "plain", 0, *STEPS), tmp_path / "plain", False, False)
    bare = type("Bare", (), {k: getattr(run.trainer, k) for k in ("model", "optimizer", "device", "train", "ranks")})()
    assert not isinstance(bare, RunTrainer)
