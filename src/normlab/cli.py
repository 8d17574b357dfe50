"""Command line: each subcommand parses its arguments and calls one function of the layers below.

    normlab run prepost [overrides] [--seeds 5|10-14|3,7,11] [--jobs 2] [--preset smoke] [--replicate DIR]
                        [--launcher local|ray] [--address auto|host:port]
    normlab train <config|yaml> [overrides] [--resume]        one run
    normlab sample <run-dir> [--n 5] [--prompt ma]          (seq2seq runs: the output for --prompt)
    normlab report <experiment-dir>
    normlab compare <experiment-dir-a> <experiment-dir-b>     claims and metrics side by side
    normlab replay <run-dir>                                  re-run a diverged run's failing steps
    normlab push <run-or-experiment-dir> <user/name>          share it on the Hugging Face Hub
    normlab pull <user/name> [--out dir]                      get it back (then sample / report / replay)
    normlab inspect <hub id|model dir> [--text F] [--seq-len 64] [--n-seqs 100] [--out DIR]
    normlab list [experiments|norms|placements|pairs|probes|sources|fields]
    normlab show <config|experiment> [overrides]             the resolved config as YAML
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

import click

from .config import ConfigError, RunConfig, dump_yaml, load_config
from .report import FIGURE_SETS

# `run` and `report` take the same figure set (report.FIGURE_SETS)
figures_option = click.option(
    "--figures", type=click.Choice(FIGURE_SETS), default="summary", show_default=True,
    help="summary: training curves, the experiment's own figures and the probes it names in full, every other "
         "probe collapsed into one overview figure; all: every probe figure in full (slower)")


def _debug() -> bool:
    return os.environ.get("NORMLAB_DEBUG", "") not in ("", "0") or "--debug" in sys.argv


class _Group(click.Group):
    """Bad input is one clear line and exit code 2, never a traceback; an unexpected error is one line too
    (exit 1), with the traceback only under --debug or NORMLAB_DEBUG=1 (for bug reports)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            if _debug():
                raise
            click.secho(f"error: {err}", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            from .training.signals import EXIT_INTERRUPTED   # here: the training package imports torch, which
            # `normlab report` does not need and `normlab run` imports after its workers started (prestart.py)

            click.secho("interrupted", fg="yellow", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # `normlab list fields | head`: the reader went away, nothing is wrong
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except MemoryError:
            click.secho("error: out of memory; use a smaller model or batch", fg="red", err=True)
            sys.exit(1)
        except Exception as err:  # noqa: BLE001  (a bug: one line for the user, the traceback with --debug)
            if _debug():
                raise
            first = (str(err).strip().splitlines() or [""])[0][:300]
            click.secho(f"error: internal error {type(err).__name__}: {first} (run with --debug or NORMLAB_DEBUG=1 for "
                        "the traceback, and please report it)", fg="red", err=True)
            sys.exit(1)


class _ListedCommand(click.Command):
    """A command whose help ends with a list computed when help is shown (experiments, shipped configs):
    `lister()` returns (rows of (name, what), a closing line), printed as a definition list."""

    def __init__(self, *args, lister=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lister = lister

    def format_epilog(self, ctx, formatter):
        if self.lister is not None:
            rows, footer = self.lister()
            with formatter.section(rows[0][0] if rows and rows[0][1] is None else "Available"):
                formatter.write_dl([r for r in rows if r[1] is not None])
            formatter.write_paragraph()
            formatter.write_text(footer)
        super().format_epilog(ctx, formatter)


def _experiments_text() -> tuple[list[tuple[str, str]], str]:
    from .experiments import list_experiments, load_experiment

    rows = [("Experiments", None)]
    for name in list_experiments():
        spec = load_experiment(name)
        presets = f" [presets: {', '.join(spec.presets)}]" if spec.presets else ""
        rows.append((name, f"{spec.title}{presets}"))
    return rows, "Example: normlab run prepost --seeds 5-9 --replicate runs/prepost"


def _configs_text() -> tuple[list[tuple[str, str]], str]:
    from .config.load import CONFIG_DIRS

    rows = [("Shipped configs", None)]
    for path in sorted(CONFIG_DIRS[0].glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        rows.append((path.stem, first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""))
    rows.append(("<experiment>", "any experiment name (normlab run --help): its base config"))
    rows.append(("<path.yaml>", "a YAML file of your own"))
    return rows, ("Every key is listed by `normlab list fields`. Example: normlab train debug model.norm.kind=dyt "
                  "train.lr=3e-3")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="normlab")
@click.option("--debug", is_flag=True, help="show the full traceback of an error (for bug reports)")
def main(debug):
    """normlab: how should a transformer normalize, and what breaks when it does not?"""


@main.command(cls=_ListedCommand, lister=_experiments_text, context_settings={"ignore_unknown_options": True})
@click.argument("experiment")
@click.argument("overrides", nargs=-1)
@click.option("--seeds", help="seeds: a count (5 = 0..4), a range (10-14) or a list (3,7,11); default: the experiment's")
@click.option("--jobs", type=click.IntRange(1, 64),
              help="processes in parallel; default: the experiment's (--launcher ray: tasks in flight; default: all)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="parent of the experiment folder [runs]")
@click.option("--preset", help="a named preset of the experiment (smoke, gpu, paper ...; see the list below)")
@click.option("--skip-failed", is_flag=True, help="do not retry runs whose summary says failed")
@click.option("--replicate", type=click.Path(file_okay=False),
              help="an earlier run of this experiment on other seeds: write a replication table of the verdicts")
@click.option("--no-stack", is_flag=True, help="one process per run (default: same-shape runs train stacked)")
@figures_option
@click.option("--launcher", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: processes on this machine; ray: one Ray task per run on a Ray cluster, retried on a lost "
                   "node (pip install 'normlab[ray]'; --out must be a filesystem every node mounts)")
@click.option("--address", help="with --launcher ray: the cluster, auto (the one `ray start` began on this machine) "
                                "or host:port; default: start a local Ray for this sweep")
def run(experiment, overrides, seeds, jobs, out_dir, preset, skip_failed, replicate, launcher, address, no_stack,
        figures):
    """Train every variant x seed of EXPERIMENT (resuming unfinished runs) and write its report.

    OVERRIDES are dotted key=value pairs for every variant; VARIANT:key=value sets one variant's only."""
    from .prestart import Prestarted

    # the workers start now, before this process imports torch to plan the sweep (prestart.py); --jobs, else every
    # shipped experiment's 2, at most the cores; the sweep adopts what it needs and ends the rest
    n = min(jobs or 2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    with Prestarted(n if launcher == "local" else 0, reuse=not no_stack) as started:
        from .experiments.run import exit_code, failed_runs, run_experiment
        from .report import summary_table

        result = run_experiment(experiment, list(overrides), seeds, jobs, out_dir, preset, skip_failed, replicate,
                                launcher=launcher, address=address, echo=click.echo, stack=not no_stack,
                                display="auto", started=started, figures=figures)
    if result.interrupted:
        sys.exit(exit_code(result))
    failed = failed_runs(result)
    if not result.report:   # every run failed: no report of n/a tables; one line with the (first) cause
        causes = list(dict.fromkeys(failed.values()))
        names = ", ".join(list(failed)[:3]) + (f" and {len(failed) - 3} more" if len(failed) > 3 else "")
        click.secho(f"error: all {len(failed)} runs failed ({names}), so no report was written: {causes[0]}"
                    + (f" (and {len(causes) - 1} other error(s); see each run's summary.json)" if len(causes) > 1
                       else ""), fg="red", err=True)
        sys.exit(exit_code(result))
    from .experiments import load_experiment

    click.echo(summary_table(result.exp_dir, load_experiment(experiment)))
    click.echo(f"trained in {result.wall_s:.1f} s; report: {result.report['report.html']} "
               "(and report.md, results.json, PNGs)")
    if failed:  # one line; each run's summary.json holds its whole error, and a re-run retries it
        click.secho(f"error: {len(failed)} of {len(result.results)} runs failed: "
                    + "; ".join(f"{name}: {why}" for name, why in failed.items()), fg="red", err=True)
        sys.exit(exit_code(result))


@main.command(cls=_ListedCommand, lister=_configs_text, context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1)
@click.option("--resume", is_flag=True, help="continue the run in <out_dir>/<name> from its last checkpoint")
def train(config, overrides, resume):
    """Train one run from CONFIG (a shipped name like `debug`, or a YAML path) with dotted overrides."""
    from .training import train as train_run
    from .training.console import display_callbacks
    from .training.dist import shutdown as shutdown_dist
    from .training.signals import EXIT_INTERRUPTED
    from .training.trackers import close_open_trackers

    cfg = load_config(config, list(overrides))
    run_dir = Path(cfg.out_dir) / cfg.name
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 prints
    # a terminal gets the rich bar (loss, tokens/s); nohup / Slurm / CI get a line every train.print_every steps
    shown = display_callbacks("auto") if main_rank else []
    try:
        summary = train_run(cfg, run_dir, resume=resume, callbacks=shown)
    finally:
        for display in shown:
            display.close()
        close_open_trackers()
    shutdown_dist()
    if not main_rank:
        return
    click.echo(json.dumps(summary, indent=2))
    click.echo(f"run directory: {run_dir}")
    if summary.get("status") == "interrupted":
        click.echo(f"stopped at step {summary['step']}; continue with: normlab train {config} "
                   f"{' '.join(overrides)} --resume".replace("  ", " "))
        sys.exit(EXIT_INTERRUPTED)
    if summary.get("status") == "diverged":
        sys.exit(3)


MAX_SAMPLES = 10_000


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--n", "n", type=click.IntRange(1, MAX_SAMPLES), default=5, show_default=True)
@click.option("--prompt", default="", help="text the samples start with (seq2seq runs: the input to map)")
@click.option("--temperature", type=click.FloatRange(0, 100), help="default: the run's sample.temperature")
@click.option("--seed", type=click.IntRange(0, 2 ** 63 - 1), default=0, show_default=True)
def sample(run_dir, n, prompt, temperature, seed):
    """Generate N samples from the last checkpoint of RUN_DIR."""
    from .data import load_tokenizer
    from .model import build_model
    from .rundir import latest_checkpoint, load_weights
    from .training import generate_samples, saved_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = saved_config(run_dir)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ConfigError(f"{run_dir} has no checkpoint yet; train it first (normlab train ... --resume)")
    if temperature is not None:
        if temperature != temperature:
            raise ConfigError("--temperature must be a number in [0, 100] (0 = greedy)")
        cfg.sample.temperature = temperature
    tok = load_tokenizer(run_dir / "tokenizer.json")
    if tok.vocab_size < cfg.model.vocab_size:   # the model would sample ids this tokenizer cannot decode
        raise ConfigError(f"{run_dir / 'tokenizer.json'} has {tok.vocab_size} tokens, fewer than the model's "
                          f"model.vocab_size={cfg.model.vocab_size} ({run_dir / 'config.yaml'}); it is not the "
                          "tokenizer this run was trained with")
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
@figures_option
def report(exp_dir, figures):
    """Rebuild the report of EXP_DIR from its run directories (finished ones; a partial sweep says what is missing);
    a run directory gets a report of that one run, written into it."""
    from .experiments import list_experiments, load_experiment
    from .report import build_report
    from .rundir import read_json

    info_path = Path(exp_dir) / "experiment.json"
    name = read_json(info_path).get("name") if info_path.exists() else None
    spec = load_experiment(name) if isinstance(name, str) and name in list_experiments() else None
    for path in build_report(exp_dir, spec, figures).values():
        click.echo(path)


@main.command()
@click.argument("dir_a", type=click.Path(exists=True, file_okay=False))
@click.argument("dir_b", type=click.Path(exists=True, file_okay=False))
def compare(dir_a, dir_b):
    """Two experiment folders side by side: each claim's verdict and effect, each metric per variant (B - A)."""
    from .report.compare import compare_text

    click.echo(compare_text(dir_a, dir_b))


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="create the repo as private")
@click.option("--revision", help="branch to push to (default: main)")
@click.option("--with-optimizer", is_flag=True, help="also push state.safetensors (optimizer state, ~2x the weights)")
@click.option("--message", help="commit message")
def push(path, repo_id, private, revision, with_optimizer, message):
    """Push a run or experiment directory PATH to the Hugging Face Hub model repo REPO_ID."""
    from .publish import push as push_dir

    url = push_dir(Path(path), repo_id, private=private, revision=revision, with_optimizer=with_optimizer,
                   message=message)
    click.echo(f"pushed {path} -> {url}")


@main.command()
@click.argument("repo_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="where to put it [runs/hub/<user>--<name>]")
@click.option("--revision", help="branch, tag or commit (default: main)")
def pull(repo_id, out_dir, revision):
    """Download a run or experiment that `normlab push` uploaded to REPO_ID."""
    from .publish import describe_pull, pull as pull_dir

    click.echo(describe_pull(pull_dir(repo_id, Path(out_dir) if out_dir else None, revision)))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def replay(run_dir):
    """Replay a diverged RUN_DIR from its last good state to the failing batch; exit 0 if it reproduces."""
    from .training.forensics import replay_run

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


@main.command(name="inspect")
@click.argument("model")
@click.option("--text", help="a text file, or the text itself [the embedded names corpus, shuffled, joined by spaces]")
@click.option("--seq-len", default="64", show_default=True, metavar="N",
              help="tokens per window, the sink metric's evaluation length (Gu et al. 2024: 64)")
@click.option("--n-seqs", default="100", show_default=True, metavar="N", help="windows (consecutive, no BOS)")
@click.option("--out", "out_dir", type=click.Path(), help="output folder [runs/inspect/<model>]")
@click.option("--offline", is_flag=True, help="load a hub id from the local Hugging Face cache only")
def inspect_cmd(model, text, seq_len, n_seqs, out_dir, offline):
    """Run the forward probes on MODEL, a Hugging Face causal LM (hub id or local folder; safetensors only)."""
    from .inspect.run import inspect_model, summary_lines

    for line in summary_lines(inspect_model(model, text, seq_len, n_seqs, out_dir, offline, echo=click.echo)):
        click.echo(line)


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
            click.echo(f"  {name:<21} {describe(cls)}")
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
            click.echo(f"  {name:<20} {describe_probe(cls)}" + ("" if cls.in_all else " [not in `all`: name it]"))
    if what in ("all", "sources"):
        click.secho("data sources (data.source)", bold=True)
        for name, text in SOURCES.items():
            click.echo(f"  {name:<14} {text}")
    if what == "fields":
        _print_fields()


def _print_pairs():
    """The norm kind x placement grid: ok / refused, then each refusal's reason."""
    from .model import PLACEMENTS, kind_is_used, pair_reason
    from .norms import NORMS

    kinds, places = sorted(NORMS), sorted(PLACEMENTS)
    click.secho("norm kind x placement (rows x columns)", bold=True)
    w = max(map(len, kinds)) + 1  # the kind column fits the longest kind name
    click.echo(" " * (w + 2) + "".join(f"{p:<10}" for p in places))
    for kind in kinds:
        cells = ["refused" if pair_reason(kind, p) else ("ok" if kind_is_used(p) else "ok*") for p in places]
        click.echo(f"  {kind:<{w}}" + "".join(f"{c:<10}" for c in cells))
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


WIDTH = 100      # `normlab list fields` fits a 100-column terminal
KEY_WIDTH = 28


def _print_fields() -> None:
    """Every config key: its type and allowed values (every Literal's choices, every Range, the registry
    keys where a registry decides), its default, and its docstring wrapped under it."""
    import textwrap

    click.secho("config fields: KEY  type, allowed values (default)  and what it means; set one with KEY=VALUE",
                bold=True)
    wrap = textwrap.TextWrapper(width=WIDTH, initial_indent=" " * (KEY_WIDTH + 2),
                                subsequent_indent=" " * (KEY_WIDTH + 2), break_on_hyphens=False)
    for path, tp, doc, default in _fields(RunConfig):
        shown = str(default).lower() if isinstance(default, bool) else repr(default)  # as typed in KEY=VALUE
        head = f"{tp} (default {shown})"
        lines = wrap.wrap(head)
        lines[0] = f"  {path:<{KEY_WIDTH}}" + lines[0][KEY_WIDTH + 2:] if len(path) <= KEY_WIDTH else lines[0]
        if len(path) > KEY_WIDTH:
            lines.insert(0, f"  {path}")
        click.echo("\n".join(lines + wrap.wrap(doc)))


def _registry_values() -> dict[str, str]:
    """Keys whose allowed values a registry decides (checked in validate(), not by the annotation)."""
    from .data import SOURCES
    from .model import PLACEMENTS
    from .norms import NORMS
    from .probes import PROBES

    return {"model.norm.kind": "one of " + " | ".join(sorted(NORMS)),
            "model.norm.placement": "one of " + " | ".join(sorted(PLACEMENTS)),
            "data.source": "one of " + " | ".join(SOURCES),
            "probes.names": "list of: all | " + " | ".join(PROBES)}


def _plain(text: str) -> str:
    """Range.text() prints a float bound like 1e30 as the integer 10000...19884624838656 (its exact value);
    any run of more than 15 digits is shown as the float it came from."""
    import re

    return re.sub(r"\d{16,}", lambda m: f"{float(m.group()):g}", text)


def _type_text(tp, path: str = "") -> str:
    """A field's type as a reader needs it: `one of a | b` for a Literal, `int in [1, 2^16]` for a Range."""
    from .config.schema import Range

    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        ranges = [_plain(m.text()) for m in meta if isinstance(m, Range)]
        return f"{_type_text(base)} in {' and '.join(ranges)}" if ranges else _type_text(base)
    if origin is typing.Literal:
        return "one of " + " | ".join(str(v) for v in typing.get_args(tp))
    if tp is bool:
        return "bool: true | false"
    registry = _registry_values().get(path)
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    return f"{name}, {registry}" if registry else name


def _fields(cls, prefix=""):
    """(dotted path, type and allowed values, docstring, default) for every leaf field, docstrings read from
    the source."""
    import ast
    import inspect

    docs = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = " ".join(nxt.value.value.split())   # a docstring's line breaks are not the text's
    hints = typing.get_type_hints(cls, include_extras=True)
    instance = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _fields(tp, prefix + f.name + ".")
        else:
            yield prefix + f.name, _type_text(tp, prefix + f.name), docs.get(f.name, ""), getattr(instance, f.name)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("config")
@click.argument("overrides", nargs=-1)
def show(config, overrides):
    """Print the resolved config (defaults + YAML + overrides) that a run would use."""
    click.echo(dump_yaml(load_config(config, list(overrides))), nl=False)


if __name__ == "__main__":
    main()
