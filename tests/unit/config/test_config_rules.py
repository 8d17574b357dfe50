"""Config rules are declared in one table (config/rules.py), listed without importing anything, and all of them
run whatever was imported before validate(); `import normlab.config` imports no torch."""
import re
import subprocess
import sys

import pytest

import normlab as nl
from normlab.config import rules

from repo import SRC


def _fresh(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_config_imports_no_torch_and_lists_its_rules_without_importing_them():
    out = _fresh("import sys, normlab.config as c\n"
                 "print(len(c.rules.RULES), 'torch' in sys.modules, any(m.startswith('normlab.model') for m in sys.modules))")
    assert out == f"{len(rules.RULES)} False False"


def test_a_rule_of_a_torch_module_fires_after_importing_only_the_config():
    out = _fresh("import normlab.config as c\n"
                 "try:\n    c.load_config('debug', ['train.optimizer=sgd', 'train.momentum=0', 'train.nesterov=true'])\n"
                 "except c.ConfigError as e:\n    print('refused:', e)")
    assert out.startswith("refused:") and "nesterov" in out


def test_every_declared_rule_resolves_and_no_module_registers_one_on_import():
    for ref in rules.RULES:
        assert callable(rules.resolve(ref)), ref
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^@register_rule|^register_choices\(", text, re.M), path
    names = {ref.split(":")[1] for ref in rules.RULES}
    defined = {m for path in SRC.rglob("*.py") for m in re.findall(r"^def (_\w+)\(cfg", path.read_text(), re.M)}
    assert names <= defined


def test_registry_choices_name_the_registered_values():
    choices = rules.all_choices()
    assert set(choices["model.norm.kind"]()) == set(nl.NORMS)
    with pytest.raises(nl.ConfigError, match="is not registered"):
        nl.load_config("debug", ["model.norm.placement=nowhere"])
