"""Typed settings (brainiron.settings): config/config.yaml holds exactly their defaults, so no
default is written twice; the schema and the dataclasses know the same keys."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from brainiron.settings import RegistrationSettings, Settings
from brainiron.workflow import DEFAULT_CONFIG
from brainiron.workflow import SCHEMA as SCHEMA_PATH

CONFIG = yaml.safe_load(DEFAULT_CONFIG.read_text())
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())


def test_config_yaml_equals_the_defaults():
    assert Settings().to_config() == CONFIG


def test_schema_and_settings_know_the_same_keys():
    assert set(SCHEMA["properties"]) == {f.name for f in dataclasses.fields(Settings)}
    for f in dataclasses.fields(Settings):
        default = getattr(Settings(), f.name)
        if dataclasses.is_dataclass(default):
            section = SCHEMA["properties"][f.name]
            assert set(section["properties"]) == {g.name for g in dataclasses.fields(default)}, \
                f.name


def test_from_config_round_trip_and_types():
    changed = {**CONFIG, "registration": {**CONFIG["registration"],
                                          "reg_iterations": [10, 5, 0], "syn_sampling": 3}}
    settings = Settings.from_config(changed)
    assert settings.registration.reg_iterations == (10, 5, 0)
    assert settings.registration.syn_sampling == 3
    assert settings.to_config() == changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.registration.syn_sampling = 4  # type: ignore[misc]


def test_a_section_alone_fills_in_defaults():
    reg = RegistrationSettings.from_config({"resolution_mm": 1.5})
    assert reg.resolution_mm == 1.5 and reg.transform == "SyN"
    assert Settings.from_config({"threads": 1}).refinement.enabled is False
