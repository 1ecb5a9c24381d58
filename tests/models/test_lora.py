import json

import pytest
import torch
from peft import PeftModel

from burnish.models.logprobs import sequence_logprobs
from burnish.models.lora import (
    attach_lora,
    load_adapter,
    prepare_policy,
    reference_mode,
    save_adapter,
    trainable_parameters,
)
from burnish.models.tiny import tiny_model


def _tokens(tok, texts):
    ids = [tok.encode(t) for t in texts]
    n = min(len(i) for i in ids)
    return torch.tensor([i[:n] for i in ids])


def _train_step(policy, x, lr=1e-2):
    opt = torch.optim.AdamW(trainable_parameters(policy), lr=lr)
    logp, _ = sequence_logprobs(policy, x)
    (-logp.sum()).backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lora_step_changes_only_adapter_weights(arch):
    model, tok = tiny_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    policy = attach_lora(model, rank=4)
    x = _tokens(tok, ["hello world", "goodbye all"])
    _train_step(policy, x)
    base_names = set()
    for name, p in policy.named_parameters():
        if "lora_" in name:
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        base_names.add(key)
        assert torch.equal(p, before[key]), f"base weight {key} changed"
    assert base_names == set(before)
    lora_b = [p for n, p in policy.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B started at 0 and moved
    targets = {n.split(".")[-4] for n, _ in policy.named_parameters() if "lora_A" in n}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_reference_mode_reproduces_base_logprobs_exactly():
    model, tok = tiny_model()
    x = _tokens(tok, ["the quick brown fox", "jumps over the dog"])
    with torch.no_grad():
        base_logp, _ = sequence_logprobs(model, x)
    policy = attach_lora(model, rank=4)
    _train_step(policy, x)
    with torch.no_grad():
        trained_logp, _ = sequence_logprobs(policy, x)
        with reference_mode(policy):
            ref_logp, _ = sequence_logprobs(policy, x)
        after_logp, _ = sequence_logprobs(policy, x)
    assert not torch.allclose(trained_logp, base_logp)
    assert torch.equal(ref_logp, base_logp)
    assert torch.equal(after_logp, trained_logp)  # the adapter is back on after the block


def test_reference_mode_refuses_plain_model():
    model, _ = tiny_model()
    with pytest.raises(TypeError, match="needs a LoRA"), reference_mode(model):
        pass


def test_saved_adapter_is_peft_format_and_reloads_identically(tmp_path):
    model, tok = tiny_model()
    policy = attach_lora(model, rank=4, alpha=8)
    x = _tokens(tok, ["some text here", "other text now"])
    _train_step(policy, x)
    with torch.no_grad():
        expected, _ = sequence_logprobs(policy, x)
    save_adapter(policy, tmp_path / "adapter")
    files = {f.name for f in (tmp_path / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 4 and cfg["lora_alpha"] == 8

    fresh, _ = tiny_model()  # same seed: same base weights
    reloaded = PeftModel.from_pretrained(fresh, str(tmp_path / "adapter"))
    with torch.no_grad():
        got, _ = sequence_logprobs(reloaded, x)
    assert torch.equal(got, expected)

    fresh2, _ = tiny_model()
    ours = load_adapter(fresh2, tmp_path / "adapter")
    with torch.no_grad():
        got2, _ = sequence_logprobs(ours, x)
    assert torch.equal(got2, expected)
    assert not trainable_parameters(ours)  # loaded for inference by default


def test_named_adapter_saves_flat_and_loads_beside_default(tmp_path):
    model, tok = tiny_model()
    policy = attach_lora(model, rank=4)
    x = _tokens(tok, ["abcdefgh", "ijklmnop"])
    _train_step(policy, x)
    save_adapter(policy, tmp_path / "a")
    load_adapter(policy, tmp_path / "a", adapter_name="copy")
    save_adapter(policy, tmp_path / "b", adapter_name="copy")
    assert (tmp_path / "b" / "adapter_model.safetensors").is_file()
    with torch.no_grad():
        default_logp, _ = sequence_logprobs(policy, x)
        policy.set_adapter("copy")
        copy_logp, _ = sequence_logprobs(policy, x)
    assert torch.equal(copy_logp, default_logp)


def test_load_adapter_missing_dir_is_clear(tmp_path):
    model, _ = tiny_model()
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        load_adapter(model, tmp_path)


def test_full_finetuning_and_unknown_arch():
    model, _ = tiny_model()
    policy = prepare_policy(model, lora=False)
    assert policy is model and policy.training
    assert len(trainable_parameters(policy)) == len(list(model.parameters()))
    lora_policy = prepare_policy(tiny_model()[0], lora=True, rank=2)
    assert isinstance(lora_policy, PeftModel)
    assert all("lora_" in n for n, p in lora_policy.named_parameters() if p.requires_grad)

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="no default LoRA target modules for architecture 'Odd'"):
        attach_lora(Odd())
    with pytest.raises(ValueError, match="rank must be >= 1"):
        attach_lora(tiny_model()[0], rank=0)
