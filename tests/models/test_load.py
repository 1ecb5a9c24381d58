import pytest
import torch

from burnish.models import load as load_mod
from burnish.models.load import load_model
from burnish.models.tiny import tiny_model


def test_load_local_directory(tmp_path):
    model, tok = tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model(str(tmp_path))
    assert not loaded.training
    x = torch.tensor([tok.encode("hello")])
    torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert tok2.pad_token_id == tok.pad_token_id
    bf16, _ = load_model(tmp_path, dtype="bfloat16")
    assert next(bf16.parameters()).dtype == torch.bfloat16


def test_pad_token_is_set_from_eos_when_missing(tmp_path):
    model, tok = tiny_model(hidden_size=32, num_layers=1)
    tok.pad_token = None
    model.generation_config.pad_token_id = None
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model(tmp_path)
    assert tok2.pad_token_id == tok2.eos_token_id
    assert loaded.generation_config.pad_token_id == tok2.eos_token_id


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        load_model(str(missing))


def test_directory_without_model_names_the_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*not a model directory"):
        load_model(str(tmp_path / "empty"))


def test_unknown_dtype_lists_allowed():
    with pytest.raises(ValueError, match="unknown dtype 'fp8'.*bfloat16"):
        load_model("whatever", dtype="fp8")


def test_burnish_tiny_not_built_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(load_mod, "tiny_model_dir", lambda: tmp_path / "burnish_tiny")
    with pytest.raises(FileNotFoundError, match="not built.*burnish tiny pretrain --out"):
        load_model("burnish-tiny")


def test_burnish_tiny_resolves_to_package_dir(tmp_path, monkeypatch):
    d = tmp_path / "burnish_tiny"
    model, tok = tiny_model(hidden_size=32, num_layers=1)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    monkeypatch.setattr(load_mod, "tiny_model_dir", lambda: d)
    loaded, _ = load_model("burnish-tiny")
    assert loaded.config.hidden_size == 32


def test_hub_ids_pass_through_unchanged():
    assert load_mod.resolve_model_path("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_loaded_models_run_without_hub_kernels(tmp_path):
    """transformers turns hub kernels on wherever the `kernels` package is installed; the
    models `load_model` returns have them off, and train/eval switches leave them off."""
    pytest.importorskip("kernels")
    model, tok = tiny_model("llama", hidden_size=32, num_layers=1, num_heads=2)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    from transformers import AutoModelForCausalLM

    if not AutoModelForCausalLM.from_pretrained(tmp_path).use_kernels:
        pytest.skip("this transformers leaves hub kernels off (USE_HUB_KERNELS or its version)")
    loaded, _ = load_model(tmp_path)
    assert not loaded.use_kernels
    loaded.train()
    loaded.eval()
    assert not loaded.use_kernels
