"""Configuration: typed, frozen, validated once, up front (DESIGN.md section 2).

``schema`` holds the sections (pydantic models, frozen, with their allowed values), ``params``
the kinds of search-space parameter, ``base`` the error and value types they share; ``load``
builds a config from YAML and overrides, ``identity`` turns one into plain data (params, hash,
masked secrets), ``paths`` says where each store lives.
"""

from __future__ import annotations

from droplab.config.base import ConfigError
from droplab.config.identity import config_hash, flatten, mask_secrets, public_dict, to_dict
from droplab.config.load import from_dict, load_config, parse_override, read_yaml, with_overrides
from droplab.config.paths import (
    artifact_root,
    experiment_name,
    runs_dir,
    study_name,
    study_storage,
    tracking_uri,
)
from droplab.config.schema import (
    CompareConfig,
    Config,
    DataConfig,
    ModelConfig,
    PathsConfig,
    StudyConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "CompareConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "PathsConfig",
    "StudyConfig",
    "TrackingConfig",
    "TrainConfig",
    "artifact_root",
    "config_hash",
    "experiment_name",
    "flatten",
    "from_dict",
    "load_config",
    "mask_secrets",
    "parse_override",
    "public_dict",
    "read_yaml",
    "runs_dir",
    "study_name",
    "study_storage",
    "to_dict",
    "tracking_uri",
    "with_overrides",
]
