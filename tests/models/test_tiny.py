import string
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from burnish.models.tiny import SPECIAL_TOKENS, char_tokenizer, tiny_model


def test_every_ascii_text_round_trips():
    tok = char_tokenizer()
    text = "".join(chr(c) for c in range(128)) + "  a\tb\n\n c  "
    ids = tok.encode(text)
    assert len(ids) == len(text)  # one token per character
    assert tok.decode(ids) == text


def test_printable_newline_tab_are_single_tokens_and_unknown_maps_to_unk():
    tok = char_tokenizer()
    for ch in string.printable:
        assert len(tok.encode(ch)) == 1
    ids = tok.encode("aé")
    assert ids[1] == tok.unk_token_id
    assert tok.convert_ids_to_tokens(ids[1]) == "<|unk|>"


def test_special_tokens_and_chat_template():
    tok = char_tokenizer()
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<|pad|>"
    for s in SPECIAL_TOKENS:
        assert len(tok.encode(s)) == 1
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "1+1?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>be brief<|end|><|user|>1+1?<|end|><|assistant|>"
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    assert text.endswith("1+1?<|end|>")


def test_tokenizer_and_model_round_trip_save_pretrained(tmp_path):
    model, tok = tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|user|>Hi, there!\n\t<|end|>"
    assert tok2.encode(text) == tok.encode(text)
    assert tok2.decode(tok.encode(text)) == text
    assert tok2.chat_template == tok.chat_template
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path)
    x = torch.tensor([tok.encode("abc")])
    torch.testing.assert_close(model2(x).logits, model(x).logits)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_model_is_fast_fp32_eval_and_seeded(arch):
    t0 = time.perf_counter()
    model, tok = tiny_model(arch, seed=3)
    assert time.perf_counter() - t0 < 1.0
    assert model.config.model_type == arch
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    same, _ = tiny_model(arch, seed=3)
    other, _ = tiny_model(arch, seed=4)
    w = dict(model.named_parameters())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(w[name], dict(same.named_parameters())[name])
    assert not torch.equal(w[name], dict(other.named_parameters())[name])


def test_tiny_model_leaves_global_rng_alone_and_rejects_bad_args():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_model()
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(ValueError, match="unknown tiny-model arch 'gpt9'"):
        tiny_model("gpt9")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not divisible"):
        tiny_model(hidden_size=30, num_heads=4)
