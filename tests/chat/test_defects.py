"""End tokens named only by the generation config, Qwen3 thinking, Llama 3.x tool calls."""

import asyncio
from itertools import islice

from burnish.doctor import _ScriptSampler, replay_contexts
from burnish.envs import load_env
from burnish.models.chat import chat_format_of
from burnish.models.load import load_model
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import ChatCodec, run_episode
from burnish.rollout.local import LocalSampler

PARAMS = SamplingParams(max_new_tokens=64)


def _play(fixture_dir, env_name, texts, chat=None, task_index=0):
    model, tok = load_model(fixture_dir, chat=chat)
    env = load_env(env_name)
    task = list(islice(env.tasks("train", 0), task_index + 1))[-1]
    texts = texts(task) if callable(texts) else texts
    sampler = _ScriptSampler([tok.encode(t, add_special_tokens=False) for t in texts])
    traj = asyncio.run(run_episode(env, task, sampler, tok, PARAMS))
    return env, task, tok, traj


def test_generation_config_end_token_is_stripped_from_content(fixture_dirs):
    # tokenizer EOS <|end_of_text|>; <|eot_id|> ends the turn (generation config, template)
    env, task, tok, traj = _play(
        fixture_dirs["llama3.1-end-of-text"], "arithmetic", lambda t: [f"{t.answer}<|eot_id|>"]
    )
    assert traj.messages[-1].content == str(task.answer)
    assert env.score(task, traj).value == 1.0


def test_llama_guess_number_turns_are_accepted_and_rows_have_one_end_token(fixture_dirs):
    def guesses(task):
        low, high = task.info["low"], task.info["high"]
        out = []
        while True:
            mid = (low + high) // 2
            out.append(f"{mid}<|eot_id|>")
            if mid == task.answer:
                return out
            low, high = (mid + 1, high) if mid < task.answer else (low, mid - 1)

    env, task, tok, traj = _play(fixture_dirs["llama3.1-end-of-text"], "guess-number", guesses)
    assert env.score(task, traj).value == 1.0
    row = tok.decode(traj.tokens)
    assert "<|eot_id|><|eot_id|>" not in row and "say a number" not in row


def test_local_sampler_stops_on_every_end_token(fixture_dirs):
    model, tok = load_model(fixture_dirs["llama3.1-end-of-text"])
    ids = set(LocalSampler(model, tok)._eos_ids())
    assert {tok.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|eom_id|>")} <= ids
    assert set(chat_format_of(tok).end_token_ids) == ids  # the same ids strip the content


def _thinking(answer):
    return f"<think>\nI work it out: {answer}.\n</think>\n\n{answer}<|im_end|>"


def test_qwen3_thinking_multi_turn_does_not_end_the_run(fixture_dirs):
    def guesses(task):
        low, high, out = task.info["low"], task.info["high"], []
        while True:
            mid = (low + high) // 2
            out.append(_thinking(mid))
            if mid == task.answer:
                return out
            low, high = (mid + 1, high) if mid < task.answer else (low, mid - 1)

    env, task, tok, traj = _play(fixture_dirs["qwen3"], "guess-number", guesses, task_index=1)
    assert traj.error is None and traj.turns > 1
    assert traj.info["template_mismatches"] > 0  # the template drops earlier <think> blocks
    assert env.score(task, traj).value == 1.0
    stable, problem = replay_contexts(ChatCodec(tok, (), chat_format_of(tok)), traj)
    assert not stable and problem is None  # every turn sampled in its recorded context
    assert traj.messages[len(task.prompt)].reasoning.startswith("I work it out")


def test_qwen3_answer_after_reasoning_scores(fixture_dirs):
    call = (
        '<tool_call>\n{{"name": "calculator", "arguments": {{"expression": "{}"}}}}\n</tool_call>'
    )

    def script(task):
        return [
            f"<think>\nuse the tool\n</think>\n\n{call.format(task.info['expr'])}<|im_end|>",
            _thinking(task.answer),
        ]

    env, task, tok, traj = _play(fixture_dirs["qwen3"], "calculator", script)
    assert env.score(task, traj).value == 1.0
    assert traj.info["tool_calls"] == 1


def test_chat_template_kwargs_reach_every_render(fixture_dirs):
    env, task, tok, traj = _play(
        fixture_dirs["qwen3"],
        "arithmetic",
        lambda t: [f"{t.answer}<|im_end|>"],
        chat={"template_kwargs": {"enable_thinking": False}},
    )
    prompt = tok.decode(traj.segments[0].tokens)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert env.score(task, traj).value == 1.0


def test_llama_tool_calls_are_parsed(fixture_dirs):
    def script(task):
        expr = task.info["expr"]
        return [
            f'{{"name": "calculator", "parameters": {{"expression": "{expr}"}}}}<|eot_id|>',
            f"{task.answer}<|eot_id|>",
        ]

    env, task, tok, traj = _play(fixture_dirs["llama3.1"], "calculator", script)
    call = traj.messages[len(task.prompt)].tool_calls[0]
    assert call.name == "calculator" and call.arguments == {"expression": task.info["expr"]}
    assert "<|start_header_id|>ipython<|end_header_id|>" in tok.decode(traj.tokens)
    assert env.score(task, traj).value == 1.0
