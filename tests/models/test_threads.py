import pytest
import torch

from burnish.models import set_threads


def test_set_threads_is_idempotent_and_validates():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1
        assert torch.get_num_threads() == 1
        assert set_threads(1) == 1  # second call: nothing to do, still 1
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="thread count must be >= 1, got 0"):
            set_threads(0)
    finally:
        torch.set_num_threads(before)
