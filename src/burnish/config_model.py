"""The configuration sections of the policy itself: `[model]` (what to load, its dtype, chat
format and threads) and `[lora]` (the adapter, or full fine-tuning)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from burnish.config_sft import Section as _Section

BaseMatmul = Literal["auto", "onednn", "blas"]
"""The CPU kernels ``lora.base_matmul`` chooses from (`burnish.models.onednn_linear`)."""


class ModelConfig(_Section):
    name: str = "burnish-tiny"
    """Hugging Face hub id, local directory, or "burnish-tiny" (shipped)."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "cpu"
    trust_remote_code: bool = False
    threads: int | None = Field(default=None, ge=1)
    """Torch CPU threads at most (None: `OMP_NUM_THREADS`, else the CPU count)."""
    adapt_threads: bool = True
    """Between steps, use fewer threads while other processes keep cores busy, and go back up
    when they stop (`burnish.models.threads.ThreadGovernor`); false: `threads` all the run."""
    keep_freed_memory: bool = True
    """While the steps run, keep the memory torch frees in the process heap instead of handing
    it back to the kernel, which then faults in and zeroes fresh pages for every large tensor
    (`burnish.train.heap.freed_memory_kept`, glibc only). The process holds its peak memory
    until the steps end. A 100m step 1.5-1.6x faster (docs/performance.md §2)."""
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra variables passed to every chat-template render, e.g. `{enable_thinking = false}`
    for Qwen3 without reasoning."""
    reasoning: str = "auto"
    """Reasoning-block parser: "auto" (`think` when the template mentions `</think>`), "none",
    or "think". Environments see the answer after the block; all sampled tokens are trained."""
    tool_format: str = "auto"
    """Tool-call syntax: "auto" (from the chat template), "hermes", "llama3_json", "mistral" or
    "compact"."""

    @field_validator("reasoning")
    @classmethod
    def _known_reasoning(cls, v: str) -> str:
        from burnish.models.chat import REASONING_PARSERS

        allowed = ["auto", "none", *REASONING_PARSERS]
        if v not in allowed:
            raise ValueError(f"unknown reasoning parser {v!r}; allowed: {', '.join(allowed)}")
        return v

    @field_validator("tool_format")
    @classmethod
    def _known_tool_format(cls, v: str) -> str:
        from burnish.envs.tool_calls import PARSERS

        allowed = ["auto", *PARSERS]
        if v not in allowed:
            raise ValueError(f"unknown tool format {v!r}; allowed: {', '.join(allowed)}")
        return v

    def chat(self) -> dict[str, Any]:
        """The keyword arguments of `burnish.models.chat.chat_format` this section sets."""
        return {
            "template_kwargs": dict(self.chat_template_kwargs),
            "reasoning": self.reasoning,
            "tool_format": self.tool_format,
        }


class LoraConfig(_Section):
    enabled: bool = True
    """False = full fine-tuning."""
    rank: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | None = None
    """None: a sensible default for the architecture."""
    base_dtype: Literal["bfloat16", "float16"] | None = None
    """Keep the frozen base weights of the adapted layers in this dtype (their matmuls run in
    it, inputs rounded as under autocast); activations, norms, LoRA weights, embeddings and the
    LM head keep `model.dtype`. None: `model.dtype`. "bfloat16" on a CPU with AVX-512 BF16 (or
    a GPU): several times the float32 matmul rate and half those weights' memory; on a CPU
    without native bf16 (no AVX-512 BF16 or AMX) it is several times slower than float32
    (docs/performance.md §2)."""
    base_matmul: BaseMatmul = "auto"
    """The CPU kernel of the frozen float32 base layers' large matmuls
    (`burnish.models.onednn_linear`): "onednn", or "blas" (torch's `F.linear`, MKL on x86).
    "auto": oneDNN on AMD x86 CPUs, where its products are measured 1.1-1.6x faster than MKL's
    sgemm (a 34m step 1.01-1.21x faster, four interleaved pairs), BLAS elsewhere.
    Same float32 arithmetic either way (the order of the sums differs)."""

    @model_validator(mode="after")
    def _base_dtype_needs_lora(self) -> LoraConfig:
        if self.base_dtype is not None and not self.enabled:
            raise ValueError(
                "lora.base_dtype keeps the frozen base weights of LoRA layers in a lower "
                "precision; with lora.enabled = false every weight trains: unset lora.base_dtype"
            )
        return self
