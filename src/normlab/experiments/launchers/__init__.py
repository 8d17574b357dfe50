"""Launchers that train a sweep's runner.Task list somewhere other than local processes (runner.Sweep).

    ray.py   each Task is a Ray task on a cluster (`normlab run X --launcher ray [--address ...]`)

A launcher has Sweep's surface: `run() -> {run name: summary}` and `interrupted`; its workers run
runner.train_task, so every launcher trains a run the same way, byte for byte.
"""
