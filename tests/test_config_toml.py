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
PRINTABLE = 'runs/🔥 emoji "quoted" back\\slash é 中文 \U0001f9ea'  # a usable run_dir
ANY_ENV = "test_config_toml:any_env"  # takes any keyword argument


def any_env(**kwargs):
    """An environment factory that takes any keyword arguments (for kwargs round trips)."""
    from burnish.envs.builtin import ReverseEnv

    return ReverseEnv()


def _roundtrip(cfg: RunConfig) -> str:
    text = to_toml(cfg)
    tomllib.loads(text)  # valid TOML at all
    assert loads_config(text) == cfg, text
    return text


def test_non_finite_numbers_are_refused_up_front():
    """No config field means anything at inf or nan, so they never reach config.toml."""
    for override in ("train.grad_clip=inf", "algorithm.entropy_coef=-inf", "env_score.weight=nan"):
        with pytest.raises(ConfigError, match="finite number"):
            load_config(None, [override])


def test_infinities_and_nan_in_kwargs_are_written_as_toml():
    cfg = RunConfig(env=EnvConfig(name=ANY_ENV, kwargs={"cap": math.inf, "floor": -math.inf}))
    cfg.env.kwargs["missing"] = math.nan
    text = to_toml(cfg)
    assert "cap = inf" in text and "floor = -inf" in text and "missing = nan" in text
    back = loads_config(text).env.kwargs
    assert back["cap"] == math.inf and back["floor"] == -math.inf and math.isnan(back["missing"])


def test_strings_with_emoji_quotes_backslashes_newlines_and_control_characters():
    cfg = RunConfig()
    cfg.log.run_dir = PRINTABLE
    cfg.log.project = NASTY + "\"\"\"'''trailing backslash\\"
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
                EnvEntry(name=ANY_ENV, weight=2.0, kwargs=kwargs),
                EnvEntry(name="reverse"),
                EnvEntry(name=ANY_ENV, kwargs={"n": {"x": 1}}),
            ],
            kwargs={"top": {"level": "🔥"}},
            max_turns=3,
        ),
        judges=[
            JudgeEntry(name="kw", rubric="C:\\rubrics\\kw.toml", weight=-2.5),
            JudgeEntry(name='group "g"', kind="group", requests_per_minute=1e9),
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
    cfg.log.run_dir = PRINTABLE
    cfg.log.project = NASTY
    save_config(cfg, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == cfg


def test_values_toml_cannot_hold_are_named():
    cfg = RunConfig()
    cfg.train.grad_clip = None  # TOML has no null, and the default is 1.0
    with pytest.raises(ConfigError, match=r"train\.grad_clip.*null"):
        to_toml(cfg)
    cfg = RunConfig(env=EnvConfig(name=ANY_ENV))
    cfg.env.kwargs = {"a": {"b": None}}
    with pytest.raises(ConfigError, match=r"env\.kwargs\.a\.b.*null"):
        to_toml(cfg)
    cfg.env.kwargs = {"a": object()}
    with pytest.raises(ConfigError, match=r"env\.kwargs\.a.*object"):
        to_toml(cfg)
    # a None field whose default is None means "default": it is left out
    cfg = RunConfig()
    assert cfg.model.threads is None and "\nthreads =" not in to_toml(cfg)
