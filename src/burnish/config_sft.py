"""The configuration sections of supervised fine-tuning and distillation: `[sft]` and `[teacher]`.

`burnish sft` reads `[sft]`; `burnish distill` reads `[teacher]` (who samples the data) and
`[sft]` (how the student learns it); `burnish train` with a `[teacher]` section runs on-policy
distillation (docs/sft_distillation.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    """A config table: unknown fields are errors, numbers are finite, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class SftConfig(Section):
    data: str = "env:arithmetic"
    """Where the transcripts come from: "env:NAME" (the environment's gold answers on its train
    tasks), a JSONL file whose lines hold a "messages" list, or "teacher" (the `[teacher]`'s
    filtered samples; what `burnish distill` uses)."""
    n_examples: int = Field(default=2000, ge=1)
    """Transcripts taken from an environment's train tasks (env: data only)."""
    batch_size: int = Field(default=32, ge=1)
    """Transcripts per optimizer step; the data are reshuffled after every pass."""
    max_length: int = Field(default=256, ge=8)
    """Longest packed row in tokens; a longer transcript is an error, never cut."""
    pack: bool = True
    """Pack several transcripts into one row (block-diagonal attention, positions restarting per
    transcript: no attention or position crosses a transcript boundary)."""

    @field_validator("data")
    @classmethod
    def _known_source(cls, v: str) -> str:
        if v.startswith("env:"):
            from burnish.envs.registry import check_env

            check_env(v.removeprefix("env:"), {})
        elif not v.strip():
            raise ValueError('set sft.data: "env:NAME", a JSONL path, or "teacher"')
        return v


class TeacherConfig(Section):
    model: str | None = None
    """A local teacher: hub id, directory or "burnish-tiny" (None: the run's own base model)."""
    adapter: str | None = None
    """A saved LoRA adapter directory for the local teacher (e.g. an RL run's `adapter/`)."""
    base_url: str | None = None
    """An OpenAI-compatible endpoint instead of a local model. `burnish distill` samples it;
    on-policy distillation asks it for the log-probs of the student's tokens, which needs vLLM's
    `prompt_logprobs` on /v1/completions and the student's tokenizer (docs/sft_distillation.md)."""
    served_model: str = "teacher"
    """The model id sent to `base_url`."""
    api_key_env: str | None = None
    temperature: float = Field(default=1.0, ge=0)
    """The teacher's sampling temperature (distill)."""
    samples_per_task: int = Field(default=4, ge=1)
    """k: answers the teacher samples per task (distill)."""
    n_tasks: int = Field(default=500, ge=1)
    """Train tasks the teacher answers (distill)."""
    filter: Literal["verifier", "judge", "both", "none"] = "verifier"
    """Which samples become SFT data: the environment's score is the maximum ("verifier"), every
    reward judge of `[[judges]]` gives at least `min_judge_score` ("judge"), both, or all."""
    min_judge_score: float = 0.5
    price_per_1k_tokens: float | None = Field(default=None, ge=0)
    """The endpoint's price, for the teacher-cost record (None: unknown)."""
    max_new_tokens: int | None = Field(default=None, ge=1)
    """Tokens per teacher turn (None: `rollout.max_new_tokens`)."""
    concurrency: int = Field(default=64, ge=1)
