"""`python killable.py <normlab args>`: the normlab CLI, stopping where a kill -9 hurts most.

NORMLAB_PAUSE=<point>:<step> plants a pause; when the run reaches it, the process writes the file
named by NORMLAB_PAUSE_MARKER and sleeps, so test_kill_resume.py can kill it exactly there:
  ckpt-files   inside save_state: model.safetensors of checkpoint <step> written, state.safetensors not yet
  ckpt-latest  checkpoint <step>'s folder in place, checkpoints/latest still naming the previous one
  flush        half of a metrics.jsonl append written (and fsynced) by the first flush that reaches <step>
  final        after the final checkpoint, during the final evaluation (<step> = train.steps)
Without NORMLAB_PAUSE it is the plain CLI. The patches wrap the real functions: what runs before
the pause is exactly what normlab does.
"""
import os
import sys
import time
from pathlib import Path


def _pause() -> None:
    marker = Path(os.environ["NORMLAB_PAUSE_MARKER"])
    marker.write_text(str(os.getpid()))
    while True:
        time.sleep(60)


def _step_of(path) -> int:
    name = Path(path).name if Path(path).name.startswith(("step_", ".tmp_step_")) else Path(path).parent.name
    return int(name.rsplit("_", 1)[1])


def plant(point: str, step: int) -> None:
    import safetensors.torch

    import normlab.rundir.checkpoint as checkpoint
    import normlab.training.loop as loop
    from normlab.rundir.metrics import MetricsWriter

    if point == "ckpt-files":
        real_save_model = safetensors.torch.save_model

        def save_model(model, filename, *args, **kwargs):
            real_save_model(model, filename, *args, **kwargs)
            if "forensics" not in str(filename) and _step_of(filename) == step:
                _pause()
        safetensors.torch.save_model = save_model
    elif point == "ckpt-latest":
        real_save_state = checkpoint.save_state

        def save_state(folder, *args, **kwargs):
            out = real_save_state(folder, *args, **kwargs)
            if Path(folder).parent.name == "checkpoints" and _step_of(folder) == step:
                _pause()
            return out
        checkpoint.save_state = save_state
    elif point == "flush":
        real_write = MetricsWriter.write

        def write(self, records):
            if self.path.name == "metrics.jsonl" and any(r["step"] >= step for r in records):
                import json

                text = "".join(json.dumps(r) + "\n" for r in records)
                with open(self.path, "a") as f:
                    f.write(text[: len(text) // 2 + 1])
                    f.flush()
                    os.fsync(f.fileno())
                _pause()
            real_write(self, records)
        MetricsWriter.write = write
    elif point == "final":
        real_record_eval = loop.record_eval

        def record_eval(run, at):
            if at == step:
                _pause()
            return real_record_eval(run, at)
        loop.record_eval = record_eval
    else:
        raise SystemExit(f"unknown pause point {point!r}")


if __name__ == "__main__":
    if os.environ.get("NORMLAB_PAUSE"):
        point, step = os.environ["NORMLAB_PAUSE"].split(":")
        plant(point, int(step))
    from normlab.cli import main

    sys.argv[0] = "normlab"
    main()
