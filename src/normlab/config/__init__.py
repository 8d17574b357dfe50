"""Typed config: schema, strict loader with dotted overrides, cross-field rules."""
from .load import build_config, dump_yaml, find_config, from_dict, load_config, read_yaml, to_dict
from .rules import register_choices, register_rule, validate
from .schema import (AttentionConfig, ConfigError, DataConfig, ModelConfig, NGPTConfig, NormConfig, ProbeConfig,
                     RunConfig, SampleConfig, TrainConfig)

__all__ = ["AttentionConfig", "ConfigError", "DataConfig", "ModelConfig", "NGPTConfig", "NormConfig", "ProbeConfig",
           "RunConfig",
           "SampleConfig", "TrainConfig", "build_config", "dump_yaml", "find_config", "from_dict",
           "load_config", "read_yaml", "register_choices", "register_rule", "to_dict", "validate"]
