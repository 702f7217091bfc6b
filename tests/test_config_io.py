"""Config loading: YAML plus dotted overrides into nested dataclasses, unknown keys rejected, round trip."""

from __future__ import annotations

import pytest

from asyncthink.config_io import load_config, save_config
from asyncthink.engines import EngineConfig
from asyncthink.runtime_config import Mode, RuntimeConfig


def test_yaml_and_overrides_build_nested_dataclasses(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mode: parallel\ncapacity: 3\nprompts:\n  style: compact\n")
    cfg = load_config(RuntimeConfig, path, ["capacity=5", "prompts.worker_sees_question=true", "wall_time_s=2.5"])
    assert cfg.mode == Mode.PARALLEL and cfg.capacity == 5 and cfg.wall_time_s == 2.5
    assert cfg.prompts.style == "compact" and cfg.prompts.worker_sees_question is True


def test_unknown_key_and_bad_value_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['capacityy'\]"):
        load_config(RuntimeConfig, None, ["capacityy=3"])
    with pytest.raises(ValueError, match="capacity must be >= 2 for asyncthink, got 1"):
        load_config(RuntimeConfig, None, ["capacity=1"])
    with pytest.raises(ValueError, match="not of the form key=value"):
        load_config(RuntimeConfig, None, ["capacity"])


def test_float_fields_take_exponents_without_a_dot_and_reject_words():
    # YAML 1.1 reads "3e-5" as a string; the field is a float, so it is the number
    assert load_config(RuntimeConfig, None, ["temperature=7e-1"]).temperature == 0.7
    with pytest.raises(ValueError, match="temperature: expected a number, got 'hot'"):
        load_config(RuntimeConfig, None, ["temperature=hot"])


def test_saved_config_loads_back_equal(tmp_path):
    cfg = load_config(RuntimeConfig, None, ["mode=sequential", "prompts.style=compact"])
    again = load_config(RuntimeConfig, save_config(cfg, tmp_path / "resolved.yaml"))
    assert again == cfg
    engine = EngineConfig(kind="hf", model="m")
    assert load_config(EngineConfig, save_config(engine, tmp_path / "e.yaml")) == engine


def test_a_config_built_in_code_takes_mappings_for_its_sections_as_a_file_does():
    from asyncthink.serve import ServeConfig

    cfg = ServeConfig(runtime={"capacity": 3, "prompts": {"style": "compact"}}, limits={"max_queued": 2},
                      engine={"kind": "hf", "model": "m"})
    assert (cfg.runtime.capacity, cfg.runtime.prompts.style, cfg.limits.max_queued) == (3, "compact", 2)
    assert isinstance(cfg.engine, EngineConfig) and cfg.engine.model == "m"
    with pytest.raises(ValueError, match=r"runtime\.: unknown key\(s\) \['capcity'\]"):
        ServeConfig(runtime={"capcity": 3})  # the same error as a file's, not a TypeError from **kwargs


def test_command_line_defaults_are_the_config_classes():
    from typer.testing import CliRunner

    from asyncthink.cli import app
    from asyncthink.config_io import default_of
    from asyncthink.serve import ServeLimits

    assert default_of(RuntimeConfig, "temperature") == RuntimeConfig().temperature
    assert default_of(RuntimeConfig, "prompts") == RuntimeConfig().prompts  # a factory's value
    with pytest.raises(ValueError, match="has no field 'nope'"):
        default_of(RuntimeConfig, "nope")
    solve = CliRunner().invoke(app, ["solve", "--help"], terminal_width=200).output
    assert f"[default: {RuntimeConfig().temperature}]" in solve
    serve = CliRunner().invoke(app, ["serve", "--help"], terminal_width=200).output
    assert f"(default {ServeLimits().max_concurrent_episodes})" in serve
