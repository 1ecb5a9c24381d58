"""`burnish doctor` on every real-format fixture, and the formats it relies on."""

import json
import warnings

import pytest
from typer.testing import CliRunner

from burnish.cli import app
from burnish.config import ConfigError, loads_config
from burnish.doctor import run_doctor
from burnish.envs.tool_calls import INVALID_CALL, LLAMA_JSON, MISTRAL, get_parser
from burnish.models.chat import THINK, chat_format
from burnish.models.load import load_model
from burnish.rollout.episode import ChatCodec
from burnish.types import Message, ToolCall

TOOL_ENVS = {"gemma2": ("arithmetic", "guess-number")}  # Gemma 2 has no tool role


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("qwen2.5", {}),
        ("qwen3", {}),
        ("qwen3", {"enable_thinking": False}),
        ("llama3.1", {}),
        ("llama3.1-end-of-text", {}),
        ("smollm2", {}),
        ("mistral-v0.3", {}),
        ("gemma2", {}),
    ],
)
def test_doctor_is_ok_on_every_env_the_template_supports(fixture_dirs, name, kwargs):
    envs = TOOL_ENVS.get(name, ("arithmetic", "guess-number", "calculator"))
    report = run_doctor(str(fixture_dirs[name]), envs, {"template_kwargs": kwargs})
    assert report.ok, report.to_dict()
    assert all(c.exact and c.gold_score == c.max_score for c in report.envs.values())


def test_doctor_json_and_exit_code(fixture_dirs):
    runner = CliRunner()
    out = runner.invoke(app, ["doctor", "--model", str(fixture_dirs["gemma2"]), "--json"])
    assert out.exit_code == 1
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(report) == {"model", "end_token_ids", "tool_format", "reasoning", "ok", "envs"}
    assert report["tool_format"] is None and report["ok"] is False
    calc = report["envs"]["calculator"]
    assert set(calc) == {"ok", "prefix_stable", "exact", "gold_score", "max_score", "problems"}
    assert not calc["ok"] and "cannot render a tool result" in calc["problems"][0]
    assert report["envs"]["guess-number"]["ok"]
    qwen3 = str(fixture_dirs["qwen3"])
    out = runner.invoke(app, ["doctor", "--model", qwen3, "--env", "guess-number", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["reasoning"] == "think" and list(report["envs"]) == ["guess-number"]
    assert report["envs"]["guess-number"]["prefix_stable"] is False


def test_doctor_names_bad_settings(fixture_dirs):
    out = CliRunner().invoke(
        app, ["doctor", "--model", str(fixture_dirs["llama3.1"]), "--tool-format", "xml"]
    )
    assert out.exit_code == 2 and "llama3_json" in out.output


def test_formats_detected_from_templates(fixture_dirs):
    expected = {
        "qwen2.5": ("hermes", None, True),
        "qwen3": ("hermes", "think", True),
        "llama3.1": ("llama3_json", None, True),
        "smollm2": ("hermes", None, True),
        "mistral-v0.3": ("mistral", None, True),
        "gemma2": (None, None, False),
    }
    for name, (tools, reasoning, system) in expected.items():
        _, tok = load_model(fixture_dirs[name])
        fmt = chat_format(tok)
        assert (
            fmt.tool_parser and fmt.tool_parser.name,
            fmt.reasoning and fmt.reasoning.name,
            fmt.system_role,
        ) == (tools, reasoning, system), name


def test_system_prompt_is_merged_when_the_template_refuses_it(fixture_dirs):
    _, tok = load_model(fixture_dirs["gemma2"])
    codec = ChatCodec(tok)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = codec.render([Message("system", "Be brief."), Message("user", "2+2=")], True)
    assert "<start_of_turn>user\nBe brief.\n\n2+2=<end_of_turn>" in text
    assert any("no system role" in str(w.message) for w in caught)


def test_tool_call_syntaxes_round_trip():
    call = (ToolCall("calculator", {"expression": "12*7"}, id="call_0"),)
    for parser in (LLAMA_JSON, MISTRAL, get_parser("hermes"), get_parser("compact")):
        parsed = parser.parse(parser.format(call))
        assert parsed[0].name == "calculator", parser.name
    assert MISTRAL.parse(MISTRAL.format(call))[0].id == "call00000"  # 9 characters
    assert LLAMA_JSON.parse("The answer is 84.") == ()
    assert LLAMA_JSON.parse('<|python_tag|>{"name": "f", "arguments": {"x": 1}}')[0].arguments == {
        "x": 1
    }
    assert LLAMA_JSON.parse('{"name": "f", "parameters": [1]}')[0].name == INVALID_CALL
    assert MISTRAL.parse("[TOOL_CALLS] [{bad")[0].name == INVALID_CALL


def test_reasoning_split():
    assert THINK.split("<think>\nabc\n</think>\n\n42") == ("abc", "42")
    assert THINK.split("abc</think>42") == ("abc", "42")  # the template opened the block
    assert THINK.split("<think>cut off") == ("cut off", "")
    assert THINK.split("42") == ("", "42")


def test_model_section_checks_chat_settings():
    cfg = loads_config("[model]\nchat_template_kwargs = {enable_thinking = false}\n")
    assert cfg.model.chat()["template_kwargs"] == {"enable_thinking": False}
    with pytest.raises(ConfigError, match="allowed: auto, none, think"):
        loads_config('[model]\nreasoning = "r1"\n')
    with pytest.raises(ConfigError, match="llama3_json"):
        loads_config('[model]\ntool_format = "xml"\n')
