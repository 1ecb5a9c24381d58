"""Runtime LoRA loading and unloading (vLLM's routes and answers), the adapter root, the rank
limit, and the `burnish serve` command itself with the routes switched off by default."""

import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

BASE = "burnish-tiny"


def _post(served, route: str, body: dict) -> httpx.Response:
    return httpx.post(served.v1 + route, json=body, timeout=60)


def _greedy(served, model: str) -> list[int]:
    r = served.client().completions.create(
        model=model, prompt="hi there", max_tokens=10, temperature=0,
        extra_body={"return_token_ids": True},
    )  # fmt: skip
    return r.choices[0].model_extra["token_ids"]


def _models(served) -> dict:
    return {m.id: m.model_extra for m in served.client().models.list().data}


def test_adapter_lifecycle(served, adapter_root, make_adapter):
    first = make_adapter(adapter_root / "rt-first", seed=21)
    second = make_adapter(adapter_root / "rt-second", seed=22)
    r = _post(served, "/load_lora_adapter", {"lora_name": "rt", "lora_path": str(first)})
    assert r.status_code == 200 and r.text == "Success: LoRA adapter 'rt' added successfully."
    card = _models(served)["rt"]
    assert (card["parent"], card["root"]) == (BASE, str(first))
    before = _greedy(served, "rt")
    assert before != _greedy(served, BASE)

    again = _post(served, "/load_lora_adapter", {"lora_name": "rt", "lora_path": str(second)})
    assert again.status_code == 400
    assert again.json()["error"]["type"] == "InvalidUserInput"
    assert "load_inplace" in again.json()["error"]["message"]
    assert _greedy(served, "rt") == before  # the refused load changed nothing

    inplace = _post(
        served, "/load_lora_adapter",
        {"lora_name": "rt", "lora_path": str(second), "load_inplace": True},
    )  # fmt: skip
    assert inplace.status_code == 200, inplace.text
    assert _models(served)["rt"]["root"] == str(second)
    _post(served, "/load_lora_adapter", {"lora_name": "rt-2", "lora_path": str(second)})
    assert _greedy(served, "rt") == _greedy(served, "rt-2") != before  # the new weights

    for name in ("rt", "rt-2"):
        gone = _post(served, "/unload_lora_adapter", {"lora_name": name})
        assert gone.status_code == 200, gone.text
        assert gone.text == f"Success: LoRA adapter '{name}' removed successfully."
    assert "rt" not in _models(served)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        served.client().completions.create(model="rt", prompt="x", max_tokens=1)
    unknown = _post(served, "/unload_lora_adapter", {"lora_name": "rt"})
    assert unknown.status_code == 404 and unknown.json()["error"] == {
        "message": "The lora adapter 'rt' cannot be found.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"lora_name": "x", "lora_path": "/etc"}, 400, "outside the adapter root"),
        ({"lora_name": "x", "lora_path": "../"}, 400, "outside the adapter root"),
        ({"lora_name": "x", "lora_path": "no-such-adapter"}, 404, "No adapter found"),
        ({"lora_name": "burnish-tiny", "lora_path": "a0"}, 400, "conflicts with a served base"),
        ({"lora_name": "", "lora_path": "a0"}, 400, "must be provided"),
        ({"lora_name": "x"}, 400, "validation error"),
    ],
)
def test_bad_loads_are_refused(served, body, status, words):
    r = _post(served, "/load_lora_adapter", body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert words in error["message"] and error["code"] == status, error
    assert "x" not in _models(served)


def test_relative_paths_resolve_inside_the_root_and_big_ranks_are_refused(
    served, adapter_root, make_adapter
):
    r = _post(served, "/load_lora_adapter", {"lora_name": "rel", "lora_path": "a1"})
    assert r.status_code == 200, r.text
    assert _greedy(served, "rel") == _greedy(served, "a1")
    assert _post(served, "/unload_lora_adapter", {"lora_name": "rel"}).status_code == 200
    big = make_adapter(adapter_root / "rank32", seed=3, rank=32)
    r = _post(served, "/load_lora_adapter", {"lora_name": "big", "lora_path": str(big)})
    assert r.status_code == 400
    assert "LoRA rank 32 is greater than max_lora_rank 16" in r.json()["error"]["message"]


def test_the_command_serves_on_loopback_without_runtime_lora_routes(tmp_path, adapter_root):
    """`burnish serve` as a user starts it: VLLM_ALLOW_RUNTIME_LORA_UPDATING unset, so the load
    and unload routes do not exist (404), as with vLLM."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ALLOW_RUNTIME_LORA_UPDATING"}
    command = [
        sys.executable, "-c", "from burnish.cli import app; app()", "serve",
        "--model", BASE, "--port", str(port), "--threads", "1",
        "--adapter", f"a0={adapter_root / 'a0'}", "--served-model-name", "tiny",
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        models = httpx.get(url + "/v1/models").json()["data"]
        assert [(m["id"], m["root"], m["parent"]) for m in models] == [
            ("tiny", BASE, None),
            ("a0", str(adapter_root / "a0"), "tiny"),
        ]
        body = {"lora_name": "x", "lora_path": str(adapter_root / "a1")}
        assert httpx.post(url + "/v1/load_lora_adapter", json=body).status_code == 404
        assert (
            httpx.post(url + "/v1/unload_lora_adapter", json={"lora_name": "a0"}).status_code == 404
        )
        r = httpx.post(
            url + "/v1/completions", json={"model": "a0", "prompt": "hi", "max_tokens": 3}
        )
        assert r.status_code == 200 and r.json()["model"] == "a0"
        assert f"http://127.0.0.1:{port}/v1" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
