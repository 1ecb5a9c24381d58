"""The models and the reward of the size benchmarks (`vs_trl.py --size`, `profile_step.py`).

Sizes:
- ``tiny``: the shipped, pretrained burnish-tiny (0.6M parameters, a 135-token character
  vocabulary); the reward is arithmetic correctness.
- ``34m``: burnish-tiny's Llama architecture widened to hidden 512 x 8 layers (MLP 2048, 8
  heads of 64) with the same character tokenizer: 33.7M parameters, almost all in the blocks.
- ``100m``: a Qwen2 of the same blocks with Qwen's 151,936-token vocabulary (tied embeddings):
  111M parameters, 78M of them in the embedding/LM head, so the vocabulary's cost shows. Its
  byte-level BPE tokenizer is trained here to that size on random words, with ChatML special
  tokens and Qwen2.5's real chat template (`tests/fixtures/chat_templates`).

The 34m and 100m models are random-init, which never answers arithmetic right: with a 0/1
reward every group would have zero variance and neither trainer would update. They get a graded
reward instead, the share of the reply's characters that are digits, which varies within every
group from the first step, so both trainers take a full update every step.
"""

from __future__ import annotations

import random
import re
import string
from pathlib import Path

from burnish.envs.builtin.arithmetic import ArithmeticEnv
from burnish.types import Score, Task

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("tiny", "34m", "100m")
QWEN_VOCAB = 151_936
CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
"""The spelling of both tokenizers' special tokens (``<|end|>``, ``<|im_start|>`` ...)."""


def digit_share(text: str) -> float:
    """The graded reward: the share of the reply's characters that are digits (0 if empty).

    Special tokens are left out first: burnish's environments see the reply decoded with its
    special tokens (a random-init model emits them mid-reply), TRL's reward functions see it
    decoded without them, and both must score the same text.
    """
    text = SPECIAL_TOKEN.sub("", text).strip()
    return sum(c.isdigit() for c in text) / len(text) if text else 0.0


class DigitShareEnv(ArithmeticEnv):
    """Arithmetic prompts, scored by `digit_share` (the random-init sizes' reward). Its name stays
    "arithmetic" so that it draws the very tasks TRL's dataset is built from."""

    def score_answer(self, task: Task, answer: str) -> Score:
        share = digit_share(answer)
        return Score(share, {"digits": share})


def reward_env(size: str) -> str:
    """The environment name burnish trains each size on."""
    return "arithmetic" if size == "tiny" else "bench_models:DigitShareEnv"


def build(size: str, out: Path) -> str:
    """The model of ``size``: a name `load_model` takes (burnish-tiny) or a directory under
    ``out`` holding a freshly built one (seeded, so every call builds the same weights)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; allowed: {', '.join(SIZES)}")
    if size == "tiny":
        return "burnish-tiny"
    from burnish.models import tiny_model

    path = out / size
    if size == "34m":
        model, tok = tiny_model("llama", hidden_size=512, num_layers=8, num_heads=8, seed=0)
    else:
        model, tok = tiny_model(
            "qwen2", hidden_size=512, num_layers=8, num_heads=8, seed=0, tokenizer=qwen_tokenizer()
        )
        model.config.tie_word_embeddings = True  # as Qwen2's small releases
        model.lm_head.weight = model.model.embed_tokens.weight
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def qwen_tokenizer():
    """A byte-level BPE tokenizer of Qwen's vocabulary size with ChatML and Qwen2.5's template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    alphabet = string.ascii_lowercase + string.digits + "+-=?"
    words = ["".join(rng.choices(alphabet, k=rng.randint(2, 9))) for _ in range(400_000)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=QWEN_VOCAB,
        special_tokens=CHATML,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(
        (" ".join(words[i : i + 50]) for i in range(0, len(words), 50)), trainer
    )
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATML])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
    template = ROOT / "tests" / "fixtures" / "chat_templates" / "qwen2_5_instruct.jinja"
    fast.chat_template = template.read_text()
    return fast
