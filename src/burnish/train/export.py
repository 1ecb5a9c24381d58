"""The trained weights where a user looks for them: `RUN_DIR/adapter/` (LoRA, PEFT format) or
`RUN_DIR/model/` (full fine-tuning, a Hugging Face model directory with its tokenizer).

`burnish eval --adapter RUN_DIR/adapter` and vLLM (`--lora-modules name=RUN_DIR/adapter`) load
the adapter as is; `burnish eval --model RUN_DIR/model` loads a fully fine-tuned model. Written
into a temporary directory and renamed into place, so a crash never leaves half of one.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from burnish.models import save_adapter


def export_weights(run_dir: Path, policy: Any, tokenizer: Any) -> Path:
    """Write the policy's trained weights into the run directory; returns where."""
    lora = hasattr(policy, "peft_config")
    final = Path(run_dir) / ("adapter" if lora else "model")
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if lora:
        save_adapter(policy, tmp)
    else:
        policy.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final
