import pytest

import normlab as nl
from normlab.config import ConfigError, load_config
from normlab.config.load import CONFIG_DIRS
from normlab.experiments import expand, list_experiments, load_experiment

SHIPPED = sorted(p for d in CONFIG_DIRS for p in d.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_yaml_loads_and_validates(path):
    if path.parent.name == "experiments":
        runs = expand(load_experiment(path.stem))
        assert runs and all(r.cfg.name.endswith(f"seed{r.seed}") for r in runs)
    else:
        assert isinstance(load_config(path.stem), nl.RunConfig)


def test_experiments_are_listed():
    assert "prepost" in list_experiments()


def test_defaults_then_yaml_then_overrides():
    cfg = load_config("prepost", ["model.norm.placement=post", "train.lr=3e-3", "train.betas=[0.9, 0.99]"])
    assert cfg.model.norm.placement == "post"
    assert cfg.train.lr == 3e-3 and isinstance(cfg.train.lr, float)
    assert cfg.train.betas == [0.9, 0.99]
    assert cfg.model.n_layer == 8           # from the YAML
    assert cfg.train.adam_eps == 1e-8       # schema default


def test_unknown_key_names_path_source_and_suggestion():
    with pytest.raises(ConfigError) as err:
        load_config("debug", ["model.norm.epsilon=1e-6"])
    msg = str(err.value)
    assert "unknown key model.norm.epsilon" in msg
    assert "CLI override 'model.norm.epsilon=1e-6'" in msg
    assert "did you mean model.norm.eps?" in msg


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  stepz: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key train.stepz \(mine.yaml\); did you mean train.steps\?"):
        load_config(str(path))


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError) as err:
        load_config("debug", ["model.mlp=gleu"])
    msg = str(err.value)
    assert "model.mlp='gleu'" in msg and "relu, gelu, swiglu, relu2" in msg and "did you mean gelu?" in msg


def test_unregistered_placement_is_refused_with_choices():
    with pytest.raises(ConfigError) as err:
        load_config("debug", ["model.norm.placement=postt"])
    msg = str(err.value)
    assert "model.norm.placement='postt'" in msg and "did you mean post?" in msg and "pre" in msg


def test_wrong_type_is_refused():
    with pytest.raises(ConfigError, match=r"train.steps='ten' .* must be an integer"):
        load_config("debug", ["train.steps=ten"])
    with pytest.raises(ConfigError, match="must be true or false"):
        load_config("debug", ["model.bias=1"])


def test_cross_field_rule():
    with pytest.raises(ConfigError, match="d_model=30 must be divisible by model.n_head=4"):
        load_config("debug", ["model.d_model=30", "model.n_head=4"])


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load_config("debug", ["train.lr"])


def test_unknown_config_name_suggests():
    with pytest.raises(ConfigError, match="did you mean prepost"):
        load_config("prepots")
