import pytest

from burnish.config import ConfigError, load_config, loads_config, save_config, to_toml
from burnish.train.demo import DEMO_CONFIG


def test_defaults_and_overrides():
    c = load_config(None, ["algorithm.loss=gspo", "rollout.group_size=4", "train.lr=3e-4"])
    assert c.algorithm.loss == "gspo"
    assert c.rollout.group_size == 4
    assert c.train.lr == pytest.approx(3e-4)
    assert c.algorithm.advantage_scale is None  # the variant's default, resolved by RunPlan


def test_roundtrip_through_toml(tmp_path):
    c = load_config(None, ['env.mix=[{name="arithmetic", weight=2.0}, {name="reverse"}]'])
    path = tmp_path / "config.toml"
    save_config(c, path)
    assert load_config(path) == c
    assert loads_config(to_toml(c)) == c


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("rollout.group_size=1", "rollout.group_size"),
        ("algorithm.loss=ppo", "allowed: grpo, dr_grpo, dapo, cispo, gspo, gspo_token"),
        ("train.nonsense=1", "unknown field 'train.nonsense'"),
        ("train.lr=-1", "train.lr"),
        ("algorithm.eps_low=-0.1", "algorithm.eps_low"),
        ("noequals", "section.field=value"),
    ],
)
def test_bad_fields_are_named(override, needle):
    with pytest.raises(ConfigError, match=None) as e:
        load_config(None, [override])
    assert needle in str(e.value)


def test_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_demo_config_is_valid():
    c = loads_config(DEMO_CONFIG)
    assert c.model.name == "burnish-tiny"
    assert c.env.name == "arithmetic"
    assert c.algorithm.loss == "dapo"
    assert c.lora.enabled
