"""Starting one sweep worker: a spawned process with two one-way pipes of its own (experiments/runner.Sweep says why
not a Queue). Shared by the workers `normlab run` starts before it imports torch (prestart.py) and the Sweep's own
(experiments/runner.py); it imports neither, nor torch.
"""
from __future__ import annotations

import os


def spawn_worker(ctx, target, index: int, reuse: bool) -> tuple:
    """(process, task pipe, message pipe) of a started worker running `target(index, inbox, outbox, parent pid,
    reuse)`."""
    tasks_in, tasks_out = ctx.Pipe(duplex=False)
    messages_in, messages_out = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(index, tasks_in, messages_out, os.getpid(), reuse))
    proc.start()
    tasks_in.close()      # the child has its own copies: its death now closes both pipes
    messages_out.close()
    return proc, tasks_out, messages_in
