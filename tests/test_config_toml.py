"""The resolved config is written as TOML that `tomllib` reads back to the same config."""

from __future__ import annotations

import math
import sys

import pytest

from burnish.config import (
    ConfigError,
    EnvConfig,
    EnvEntry,
    JudgeEntry,
    RunConfig,
    load_config,
    loads_config,
    save_config,
    to_toml,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NASTY = 'runs/🔥 emoji "quoted" back\\slash\nnew line\ttab \x01 \x7f é 中文 \U0010ffff'


def _roundtrip(cfg: RunConfig) -> str:
    text = to_toml(cfg)
    tomllib.loads(text)  # valid TOML at all
    assert loads_config(text) == cfg, text
    return text


def test_infinities_round_trip():
    cfg = RunConfig()
    cfg.train.grad_clip = math.inf
    cfg.algorithm.entropy_coef = -math.inf
    cfg.env_score.weight = math.inf
    text = _roundtrip(cfg)
    assert "grad_clip = inf" in text and "entropy_coef = -inf" in text


def test_nan_is_written_as_toml_nan():
    cfg = RunConfig()
    cfg.algorithm.entropy_coef = math.nan
    assert math.isnan(loads_config(to_toml(cfg)).algorithm.entropy_coef)


def test_strings_with_emoji_quotes_backslashes_newlines_and_control_characters():
    cfg = RunConfig()
    cfg.log.run_dir = NASTY
    cfg.log.project = "\"\"\"'''trailing backslash\\"
    cfg.model.name = ""
    _roundtrip(cfg)


def test_nested_kwargs_and_lists_of_tables_round_trip():
    kwargs = {
        "plain": 1,
        "weird key": {"dotted.key": [1, 2.5, "x", True, [], {}], "": -3},
        "emoji 🔥": {"deeper": {"deepest": NASTY, "inf": math.inf}},
        "rows": [{"a": 1}, {"b": [{"c": "d"}]}],
        "empty": {},
        "float": 1e-07,
        "big": 10**15,
    }
    cfg = RunConfig(
        env=EnvConfig(
            mix=[
                EnvEntry(name="arithmetic", weight=2.0, kwargs=kwargs),
                EnvEntry(name="reverse"),
                EnvEntry(name="module:attr", kwargs={"n": {"x": 1}}),
            ],
            kwargs={"top": {"level": "🔥"}},
            max_turns=3,
        ),
        judges=[
            JudgeEntry(name="kw", rubric="C:\\rubrics\\kw.toml", weight=-math.inf),
            JudgeEntry(name='group "g"', kind="group", requests_per_minute=math.inf),
        ],
    )
    cfg.monitors.options = {"zscore": {"threshold": 3.5, "signals": ["a", "b"]}, "on_alert": "log"}
    cfg.lora.target_modules = ["q_proj", "v_proj"]
    cfg.train.betas = (0.5, 0.75)
    text = _roundtrip(cfg)
    assert "[[env.mix]]" in text and "[[judges]]" in text


def test_defaults_and_examples_round_trip(tmp_path):
    _roundtrip(RunConfig())
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        try:
            cfg = load_config(path)
        except ConfigError:
            continue  # not a run config (e.g. judge rules)
        _roundtrip(cfg)


def test_save_config_file_round_trips(tmp_path):
    cfg = RunConfig()
    cfg.log.run_dir = NASTY
    cfg.train.grad_clip = math.inf
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_values_toml_cannot_hold_are_named():
    cfg = RunConfig()
    cfg.train.grad_clip = None  # TOML has no null, and the default is 1.0
    with pytest.raises(ConfigError, match=r"train\.grad_clip.*null"):
        to_toml(cfg)
    cfg = RunConfig()
    cfg.env.kwargs = {"a": {"b": None}}
    with pytest.raises(ConfigError, match=r"env\.kwargs\.a\.b.*null"):
        to_toml(cfg)
    cfg.env.kwargs = {"a": object()}
    with pytest.raises(ConfigError, match=r"env\.kwargs\.a.*object"):
        to_toml(cfg)
    # a None field whose default is None means "default": it is left out
    cfg = RunConfig()
    assert cfg.model.threads is None and "threads" not in to_toml(cfg)
