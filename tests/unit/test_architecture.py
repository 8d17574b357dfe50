"""The package's shape: no import cycles (lazy imports inside functions count too), and each layer imports
only the layers below it (DESIGN.md: cli > experiments > report > training > probes > model, norms >
data > rundir > config)."""
import ast
from pathlib import Path

import pytest

from repo import SRC

LAYERS = ["config", "registry", "rundir", "data", "norms", "model", "probes", "training", "report", "publish",
          "inspect", "experiments", "api", "cli"]
ALLOWED_UP = {("norms", "model")}   # none today; listed so a deliberate exception would be visible


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """Modules this file imports. `from pkg import sub` where sub is a module is an edge to pkg.sub only
    (the package is already being imported when its own submodule runs); `from pkg import name` of
    anything else is an edge to pkg itself (pkg/__init__ must have run to define it)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("normlab")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("normlab"):
                subs = {f"{mod}.{a.name}" for a in node.names}
                out |= subs & modules
                if subs - modules:
                    out.add(mod)
    return out


def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in SRC.rglob("*.py") if "experiments/" not in str(p.relative_to(SRC))
             or p.parent.name == "experiments" or p.parent.name == "launchers"}
    g = {}
    for name, path in files.items():
        g[name] = {m for m in _imports(path, name, set(files)) if m in files and m != name}
        if path.name == "__init__.py" and "import_all(" in path.read_text():  # folder discovery imports them all
            g[name] |= {m for m in files if m.rpartition(".")[0] == name}
    return g


def _parents_imported(g):
    """Importing a.b.c runs a/__init__ and a/b/__init__ first: an edge to each enclosing package."""
    out = {}
    for name, deps in g.items():
        full = set(deps)
        for d in deps:
            parts = d.split(".")
            full |= {".".join(parts[:i]) for i in range(2, len(parts))} & set(g)
        out[name] = full - {name}
    return out


def test_no_import_cycles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for d in sorted(g[n]):
            if state.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = "done"
    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_layers_import_only_downward():
    bad = []
    for name, deps in graph().items():
        src = _layer(name)
        for d in deps:
            dst = _layer(d)
            if src and dst and src != dst and LAYERS.index(dst) > LAYERS.index(src) and (src, dst) not in ALLOWED_UP:
                bad.append(f"{name} -> {d}")
    assert not bad, "upward imports: " + "; ".join(sorted(bad))


@pytest.mark.parametrize("layer", ["report"])
def test_report_reads_run_directories_not_training(layer):
    """The report layer never opens checkpoints or imports the train layer: the run directory is its interface."""
    offenders = [n for n, deps in graph().items() if _layer(n) == layer for d in deps if _layer(d) == "training"]
    assert not offenders, offenders


def test_a_sweep_worker_imports_neither_scipy_nor_matplotlib():
    """A sweep worker (spawned: a fresh interpreter) imports the runner and the training code, and reads claim
    specs through experiments/spec.py; it never reports. scipy.stats and matplotlib were ~1.7 s of each worker's
    start-up (and of every --no-stack run) before report/__init__ and evidence.py imported them lazily."""
    import subprocess
    import sys

    code = ("import sys, normlab.experiments.runner, normlab.training.stacked_loop, normlab.training\n"
            "from normlab.experiments.spec import load_experiment\n"
            "load_experiment('prepost').claim_specs\n"
            "print(sorted(m for m in ('scipy', 'scipy.stats', 'matplotlib', 'normlab.report.build') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
