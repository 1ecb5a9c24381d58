"""A real local Ray cluster (2 CPUs, no dashboard) shared by the scale tests, and a tiny model.

Every actor of these tests asks for half a CPU (`scale_helpers.scaled`).
"""

import os

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from burnish.models import tiny_model  # noqa: E402

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_cluster():
    """The cluster's GCS address; shut down after the last test."""
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A random-init tiny Llama with the character tokenizer, saved like a hub model."""
    path = tmp_path_factory.mktemp("tiny")
    model, tok = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=4, seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
