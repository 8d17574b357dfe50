"""Command line: each subcommand parses its arguments and calls one function of the layers below.

    normlab run prepost [overrides] [--seeds 3] [--jobs 2]   train an experiment, write its report
    normlab train <config|yaml> [overrides] [--resume]        one run
    normlab sample <run-dir> [--n 5] [--prompt ma]          (seq2seq runs: the output for --prompt)
    normlab report <experiment-dir>
    normlab replay <run-dir>                                  re-run a diverged run's failing steps
    normlab push <run-or-experiment-dir> <user/name>          share it on the Hugging Face Hub
    normlab pull <user/name> [--out dir]                      get it back (then sample / report / replay)
    normlab list [experiments|norms|placements|pairs|probes|sources|fields]
    normlab show <config|experiment> [overrides]             the resolved config as YAML
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

import click

from .config import ConfigError, RunConfig, dump_yaml, from_dict, load_config, read_yaml


class _Group(click.Group):
    """Turn ConfigError (bad user input) into one clear line and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            click.secho(f"error: {err}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="normlab")
def main():
    """normlab: how should a transformer normalize, and what breaks when it does not?"""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("experiment")
@click.argument("overrides", nargs=-1)
@click.option("--seeds", type=click.IntRange(1), help="number of seeds (0..N-1); default: the experiment's")
@click.option("--jobs", type=click.IntRange(1), help="runs in parallel processes; default: the experiment's")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="parent of the experiment folder [runs]")
@click.option("--preset", help="a named scale preset of the experiment (e.g. gpu, paper); see its YAML `presets`")
def run(experiment, overrides, seeds, jobs, out_dir, preset):
    """Train every variant x seed of EXPERIMENT (resuming unfinished runs) and write its report."""
    from .experiments import expand, load_experiment, run_all
    from .report import build_report, markdown_table_only
    from .train.rundir import write_json

    spec = load_experiment(experiment)
    seed_list = list(range(seeds)) if seeds else list(spec.seeds)
    planned = expand(spec, list(overrides), seed_list, out_dir, preset)
    exp_dir = planned[0].run_dir.parent
    exp_dir.mkdir(parents=True, exist_ok=True)
    info = {k: getattr(spec, k) for k in ("name", "title", "description", "seed_ref")}
    info.update(variants=list(spec.variants), seeds=seed_list, overrides=list(overrides), preset=preset,
                runs=[{"variant": p.variant, "seed": p.seed, "dir": p.run_dir.name} for p in planned])
    write_json(exp_dir / "experiment.json", info)
    click.echo(f"{spec.name}: {len(spec.variants)} variants x {len(seed_list)} seeds -> {exp_dir}")
    t0 = time.perf_counter()
    results = run_all(planned, jobs or spec.jobs)
    wall = time.perf_counter() - t0
    bad = {n: s for n, s in results.items() if s.get("status") not in ("complete",)}
    for name, s in bad.items():
        click.secho(f"  {name}: {s.get('status')} {s.get('diverged_reason') or s.get('error') or ''}", fg="yellow")
    for name, s in results.items():
        for warning in s.get("warnings") or []:
            click.secho(f"  warning {name}: {warning}", fg="red")
    paths = build_report(exp_dir)
    click.echo(markdown_table_only(exp_dir))
    click.echo(f"trained in {wall:.1f} s; report: {paths['report.html']} (and report.md, results.json, PNGs)")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--resume", is_flag=True, help="continue the run in <out_dir>/<name> from its last checkpoint")
def train(config, overrides, resume):
    """Train one run from CONFIG (a shipped name like `debug`, or a YAML path) with dotted overrides."""
    from rich.progress import Progress

    from .train import train as train_run
    from .train.dist import shutdown as shutdown_dist

    cfg = load_config(config, list(overrides))
    run_dir = Path(cfg.out_dir) / cfg.name
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 prints
    with Progress(transient=True, disable=not main_rank) as bar:
        task = bar.add_task(cfg.name, total=cfg.train.steps)
        summary = train_run(cfg, run_dir, resume=resume, progress=lambda s, n: bar.update(task, completed=s))
    shutdown_dist()
    if not main_rank:
        return
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"run directory: {run_dir}")
    if summary.get("status") == "interrupted":
        click.echo(f"stopped at step {summary['step']}; continue with: normlab train {config} "
                   f"{' '.join(overrides)} --resume".replace("  ", " "))
    if summary.get("status") == "diverged":
        sys.exit(3)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--n", "n", type=click.IntRange(1), default=5, show_default=True)
@click.option("--prompt", default="", help="text the samples start with (seq2seq runs: the input to map)")
@click.option("--temperature", type=click.FloatRange(0), help="default: the run's sample.temperature")
@click.option("--seed", type=int, default=0, show_default=True)
def sample(run_dir, n, prompt, temperature, seed):
    """Generate N samples from the last checkpoint of RUN_DIR."""
    from .data import load_tokenizer
    from .model import build_model
    from .train import generate_samples, latest_checkpoint, load_weights

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = from_dict(RunConfig, read_yaml(run_dir / "config.yaml"), source=str(run_dir / "config.yaml"))
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet; train it first (normlab train ... --resume)")
    if temperature is not None:
        cfg.sample.temperature = temperature
    tok = load_tokenizer(run_dir / "tokenizer.json")
    try:
        tok.encode(prompt)
    except ValueError as err:
        raise ConfigError(f"--prompt: {err}") from None
    model = build_model(cfg.model)
    load_weights(model, ckpt)
    if cfg.data.task != "lm":
        _sample_seq2seq(model, tok, cfg, prompt, n)
        return
    for text in generate_samples(model, tok, cfg, "cpu", prompt=prompt, n=n, seed=seed):
        click.echo(prompt + text if not text.startswith(prompt) else text)


def _sample_seq2seq(model, tok, cfg, prompt: str, n: int) -> None:
    """Greedy output for --prompt, else for the first N held-out inputs (`input -> output`)."""
    from .data import build_corpus
    from .model import inference

    inputs = [prompt] if prompt else build_corpus(cfg.data, cfg.model.block_size).val.sources[:n]
    for text in inputs:
        try:
            out = inference(model, tok, text, max_length=cfg.model.block_size)
        except ValueError as err:
            raise ConfigError(f"--prompt: {err}") from None
        click.echo(out if prompt else f"{text} -> {out}")


@main.command()
@click.argument("exp_dir", type=click.Path(exists=True, file_okay=False))
def report(exp_dir):
    """Rebuild the report of EXP_DIR from its finished run directories."""
    from .report import build_report

    try:
        paths = build_report(exp_dir)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    for path in paths.values():
        click.echo(path)


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="create the repo as private")
@click.option("--revision", help="branch to push to (default: main)")
@click.option("--with-optimizer", is_flag=True, help="also push state.pt (optimizer state, ~2x the weights)")
@click.option("--message", help="commit message")
def push(path, repo_id, private, revision, with_optimizer, message):
    """Push a run or experiment directory PATH to the Hugging Face Hub model repo REPO_ID."""
    from .train.publish import push as push_dir

    url = push_dir(Path(path), repo_id, private=private, revision=revision, with_optimizer=with_optimizer,
                   message=message)
    click.echo(f"pushed {path} -> {url}")


@main.command()
@click.argument("repo_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="where to put it [runs/hub/<user>--<name>]")
@click.option("--revision", help="branch, tag or commit (default: main)")
def pull(repo_id, out_dir, revision):
    """Download a run or experiment that `normlab push` uploaded to REPO_ID."""
    from .train.publish import describe_pull, pull as pull_dir

    click.echo(describe_pull(pull_dir(repo_id, Path(out_dir) if out_dir else None, revision)))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def replay(run_dir):
    """Replay a diverged RUN_DIR from its last good state to the failing batch; exit 0 if it reproduces."""
    from .train.forensics import replay_run

    result = replay_run(run_dir)
    rec, rep = result["recorded"], result["replayed"]
    where = lambda r: (r["first_bad"] or {}).get("module", "no bad activation")  # noqa: E731
    click.echo(f"last good state: step {result['last_good_step']}; batches "
               f"{'identical to' if result['same_batches'] else 'DIFFERENT from'} the (seed, step) batches")
    click.echo(f"recorded: step {rec['step']}, {rec['reason']}, first bad module {where(rec)}")
    click.echo(f"replayed: step {rep['step']}, {rep['reason'] or 'no divergence'}, first bad module {where(rep)}")
    if rep["first_nonfinite_grad"]:
        g = rep["first_nonfinite_grad"]
        click.echo(f"  first non-finite gradient: step {g['step']} in {', '.join(g['layers'])}")
    for layer, value in rep["max_abs_per_layer"].items():
        click.echo(f"  max |activation| {layer:<12} {value:.4g}")
    verdict = "reproduced" if result["reproduced"] else "NOT reproduced"
    click.secho(f"{verdict} (same step: {result['same_step']}, same first bad module: {result['same_first_bad']})",
                fg="green" if result["reproduced"] else "red")
    sys.exit(0 if result["reproduced"] else 1)


@main.command(name="list")
@click.argument("what", default="all",
                type=click.Choice(["all", "experiments", "norms", "placements", "pairs", "probes", "sources",
                                   "fields"]))
def list_(what):
    """List experiments, norm kinds, placements, the norm x placement matrix, probes, data sources or config fields."""
    from .data import SOURCES
    from .experiments import list_experiments, load_experiment
    from .model import PLACEMENTS
    from .norms import NORMS, describe

    if what in ("all", "experiments"):
        click.secho("experiments", bold=True)
        for name in list_experiments():
            spec = load_experiment(name)
            click.echo(f"  {name:<12} seed {spec.seed_ref or '-':<4} {spec.title}")
    if what in ("all", "norms"):
        click.secho("norm kinds (model.norm.kind)", bold=True)
        for name, cls in sorted(NORMS.items()):
            click.echo(f"  {name:<18} {describe(cls)}")
    if what in ("all", "placements"):
        click.secho("placements (model.norm.placement)", bold=True)
        for name, p in sorted(PLACEMENTS.items()):
            click.echo(f"  {name:<10} {p.formula:<52} {p.reference}")
    if what == "pairs":
        _print_pairs()
    if what in ("all", "probes"):
        from .probes import PROBES, describe as describe_probe

        click.secho("probes (probes.names)", bold=True)
        for name, cls in PROBES.items():
            click.echo(f"  {name:<20} {describe_probe(cls)}")
    if what in ("all", "sources"):
        click.secho("data sources (data.source)", bold=True)
        for name, text in SOURCES.items():
            click.echo(f"  {name:<14} {text}")
    if what == "fields":
        for path, tp, doc, default in _fields(RunConfig):
            click.echo(f"  {path:<28} {tp:<32} {default!r:<14} {doc}")


def _print_pairs():
    """The norm kind x placement grid: ok / refused, then each refusal's reason."""
    from .model import PLACEMENTS, kind_is_used, pair_reason
    from .norms import NORMS

    kinds, places = sorted(NORMS), sorted(PLACEMENTS)
    click.secho("norm kind x placement (rows x columns)", bold=True)
    click.echo(" " * 20 + "".join(f"{p:<10}" for p in places))
    for kind in kinds:
        cells = ["refused" if pair_reason(kind, p) else ("ok" if kind_is_used(p) else "ok*") for p in places]
        click.echo(f"  {kind:<18}" + "".join(f"{c:<10}" for c in cells))
    unused = [p for p in places if not kind_is_used(p)]
    click.echo(f"  * {', '.join(unused)}: no norm slots and no final norm, so the kind is unused "
               "(it only builds the final norm when model.norm.final=always)")
    click.secho("refused, and why", bold=True)
    for kind in kinds:
        for p in places:
            reason = pair_reason(kind, p)
            if reason:
                click.echo(f"  {kind} x {p}: {reason}")
    click.echo("  also refused: placement=rezero with model.norm.final=always (ReZero is norm-free by design)")


def _fields(cls, prefix=""):
    """(dotted path, type, docstring, default) for every leaf field, docstrings read from the source."""
    import ast
    import inspect

    docs = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = nxt.value.value
    hints = typing.get_type_hints(cls)
    instance = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _fields(tp, prefix + f.name + ".")
        else:
            name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            yield prefix + f.name, name, docs.get(f.name, ""), getattr(instance, f.name)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1)
def show(config, overrides):
    """Print the resolved config (defaults + YAML + overrides) that a run would use."""
    click.echo(dump_yaml(load_config(config, list(overrides))), nl=False)


if __name__ == "__main__":
    main()
