import pytest

from burnish.models import tiny_model


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A random-init tiny Llama with the character tokenizer, saved like a hub model."""
    path = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=4, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
