"""Share finished runs on the Hugging Face Hub: push a run or an experiment directory, pull one back.

A pushed repo is a run (or experiment) directory that works as it is: after `normlab pull`,
`normlab sample`, `normlab report` and `normlab replay` run on it, and the weights load with
`safetensors.torch.load_file` and no normlab at all. What goes up, per run: config.yaml,
meta.json, summary.json, metrics.jsonl, samples.txt, tokenizer.json, probes/*.npz, the divergence
forensics (forensics.json/.npz and forensics/last_good/, which `replay` needs), and the latest
checkpoint's model.safetensors and state.json with its `latest` pointer; the optimizer state
(state.safetensors, twice the weights) only with `with_optimizer`. An experiment adds experiment.json and its report (md, html,
json, PNGs) and puts each run in its own folder. README.md is a model card written from the
summaries. Seed 000 pushes bare weights (`--push_to_hub`) and reads them back in evaluate.py;
pushing the whole directory keeps what its weight analysis needs, and the training curves.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .config import ConfigError
from .rundir import inside, latest_checkpoint, read_json, write_json

RUN_FILES = ("config.yaml", "meta.json", "summary.json", "metrics.jsonl", "samples.txt", "tokenizer.json",
             "forensics.json", "forensics.npz")
RUN_DIRS = ("probes", "forensics")
EXPERIMENT_FILES = ("experiment.json", "report.md", "report.html", "results.json")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def kind_of(path: Path) -> str:
    """'run' or 'experiment', from the files a normlab directory holds."""
    path = Path(path)
    if (path / "config.yaml").exists() and (path / "summary.json").exists():
        return "run"
    if (path / "experiment.json").exists():
        return "experiment"
    raise ConfigError(f"{path} is neither a finished run directory (config.yaml + summary.json) nor an "
                      "experiment directory (experiment.json)")


def check_repo_id(repo_id: str) -> str:
    if not _REPO_ID.match(repo_id or ""):
        raise ConfigError(f"repo id {repo_id!r} is not of the form <user or org>/<name> (letters, digits, '-', "
                          "'_', '.'), e.g. alice/normlab-prepost")
    return repo_id


def stage_run(run_dir: Path, dest: Path, with_optimizer: bool = False) -> None:
    """Copy what a run directory needs on the Hub into `dest` (see the module docstring)."""
    run_dir, dest = Path(run_dir), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, dest / name)
    for name in RUN_DIRS:
        if (run_dir / name).is_dir():
            shutil.copytree(run_dir / name, dest / name)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        target = dest / "checkpoints" / ckpt.name
        target.mkdir(parents=True)
        shutil.copy2(ckpt / "model.safetensors", target / "model.safetensors")
        shutil.copy2(ckpt / "state.json", target / "state.json")
        if with_optimizer:
            shutil.copy2(ckpt / "state.safetensors", target / "state.safetensors")
        (dest / "checkpoints" / "latest").write_text(ckpt.name + "\n")


def stage(path: Path, dest: Path, with_optimizer: bool = False) -> list[tuple[str, dict]]:
    """Stage a run or an experiment into `dest`; return (folder in the repo, summary) per run."""
    path = Path(path)
    if kind_of(path) == "run":
        stage_run(path, dest, with_optimizer)
        return [(".", read_json(path / "summary.json"))]
    info = read_json(path / "experiment.json")
    for name in (*EXPERIMENT_FILES, *(p.name for p in path.glob("*.png"))):
        if (path / name).exists():
            shutil.copy2(path / name, Path(dest) / name)
    runs, kept = [], []
    for r in info.get("runs", []):
        # confined like report and replay: a crafted or pulled experiment.json must not stage (and upload) a run
        # from elsewhere on this machine
        if not isinstance(r, dict):
            raise ConfigError(f"{path / 'experiment.json'}: each of `runs` must be a mapping with a `dir`")
        run_dir = inside(path, r.get("dir"), f"{path / 'experiment.json'} runs[].dir")
        if (run_dir / "summary.json").exists():
            stage_run(run_dir, Path(dest) / r["dir"], with_optimizer)
            runs.append((r["dir"], read_json(run_dir / "summary.json")))
            kept.append(r)
    if not runs:
        raise ConfigError(f"{path}: none of the runs in experiment.json has finished (no summary.json); nothing to push")
    write_json(Path(dest) / "experiment.json", {**info, "runs": kept})  # only what went up, so `report` works on a pull
    return runs


def model_card(path: Path, repo_id: str, runs: list[tuple[str, dict]]) -> str:
    """README.md for the repo: what was trained, the headline numbers, how to get it back."""
    from .config.load import read_yaml

    path = Path(path)
    title = path.name
    if (path / "experiment.json").exists():
        title = read_json(path / "experiment.json").get("title") or title
    lines = ["---", "library_name: normlab", "tags: [normlab, normalization, transformer]", "---", "",
             f"# {title}", "", f"Trained with [normlab](https://pypi.org/project/normlab/), pushed from `{path.name}`.", "",
             "| run | norm kind / placement | params | steps | status | val loss | val bits/byte |",
             "|---|---|---|---|---|---|---|"]
    for folder, s in runs:
        cfg_path = (path if folder == "." else path / folder) / "config.yaml"
        norm = (read_yaml(cfg_path).get("model") or {}).get("norm", {}) if cfg_path.exists() else {}
        val, bpb = s.get("val_loss"), s.get("val_bpb")
        lines.append(f"| {s.get('name', folder)} | {norm.get('kind', '?')} / {norm.get('placement', '?')} | "
                     f"{s.get('params', '')} | {s.get('steps_done', s.get('steps', ''))} | {s.get('status', '')} | "
                     f"{'' if val is None else f'{val:.4f}'} | {'' if bpb is None else f'{bpb:.4f}'} |")
    first = "." if runs[0][0] == "." else runs[0][0]
    lines += ["", "```bash", f"normlab pull {repo_id} --out runs/{repo_id.split('/')[1]}",
              f"normlab sample runs/{repo_id.split('/')[1]}" + ("" if first == "." else f"/{first}") + " --n 5", "```",
              "", "Weights: `checkpoints/<step>/model.safetensors` (the step is in `checkpoints/latest`); the "
              "architecture is `config.yaml` (`normlab.build_model(cfg.model)`).", ""]
    return "\n".join(lines)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ConfigError("normlab push/pull need huggingface_hub: pip install 'normlab[hf]'") from None
    return huggingface_hub


def _hub_error(action: str, repo_id: str, err: Exception) -> ConfigError:
    from .data.hub import first_line

    return ConfigError(f"could not {action} {repo_id} ({type(err).__name__}: {first_line(err)}). Check the repo id, your "
                       "connection and your token (HF_TOKEN, or `hf auth login`)")


def push(path: Path, repo_id: str, private: bool = False, revision: str | None = None,
         with_optimizer: bool = False, message: str | None = None) -> str:
    """Upload a run or experiment directory to a model repo (created if missing); return its URL."""
    HfApi = _hub().HfApi
    check_repo_id(repo_id)
    with tempfile.TemporaryDirectory() as tmp:
        runs = stage(path, Path(tmp), with_optimizer)
        (Path(tmp) / "README.md").write_text(model_card(Path(path), repo_id, runs))
        api = HfApi()
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(folder_path=tmp, repo_id=repo_id, revision=revision,
                              commit_message=message or f"normlab push {Path(path).name} ({len(runs)} runs)")
        except Exception as err:  # HfHubHTTPError, RepositoryNotFoundError, OSError, ...
            raise _hub_error("push to", repo_id, err) from None
    return f"https://huggingface.co/{repo_id}"


def pull(repo_id: str, out_dir: Path | None = None, revision: str | None = None) -> Path:
    """Download a pushed repo into `out_dir` (default runs/hub/<user>--<name>) and return that path.
    A non-empty `out_dir` is refused: a pull never overwrites a run that is already on disk."""
    snapshot_download = _hub().snapshot_download
    from .data.hub import offline_when_unreachable

    check_repo_id(repo_id)
    out = Path(out_dir) if out_dir else Path("runs") / "hub" / repo_id.replace("/", "--")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; pull into another --out (nothing was downloaded)")
    with offline_when_unreachable() as unreachable:
        try:  # into the Hub cache first: a second pull, or one offline, is served from there
            snapshot = Path(snapshot_download(repo_id, revision=revision))
        except Exception as err:  # LocalEntryNotFoundError, RepositoryNotFoundError, ...
            extra = f" [{unreachable}, so only the local cache was read]" if unreachable else ""
            raise _hub_error("pull", repo_id + extra, err) from None
    kind_of(snapshot)  # a repo that is not a normlab directory says so now, not at the first command that reads it
    shutil.copytree(snapshot, out, dirs_exist_ok=True)  # real files (the cache holds symlinks into blobs/)  # a repo that is not a normlab directory says so now, not at the first command that reads it
    return out


def describe_pull(path: Path) -> str:
    """One line on what was pulled: the run count and where to look next."""
    if kind_of(path) == "run":
        return f"{path}: one run ({read_json(path / 'summary.json').get('status')}); next: normlab sample {path}"
    n = len(read_json(path / "experiment.json").get("runs", []))
    return f"{path}: experiment with {n} runs; next: normlab report {path}"
