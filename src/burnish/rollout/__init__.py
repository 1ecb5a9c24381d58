"""Sampling: the `Sampler` protocol and its implementations (in-process and OpenAI-compatible)."""

from burnish.rollout.base import Completion, Sampler, SamplingParams
from burnish.rollout.local import LocalSampler

__all__ = ["Completion", "LocalSampler", "Sampler", "SamplingParams"]
