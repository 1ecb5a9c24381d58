"""Which checkpoints a run directory holds, without importing torch.

`burnish.train.checkpoint` writes them; this listing is apart so that the CLI can say where an
interrupted run resumes from even when the interrupt arrived while torch was still loading.
"""

from __future__ import annotations

from pathlib import Path

DONE = "COMPLETE"
"""The file a checkpoint directory gets last: without it the checkpoint is incomplete."""


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if (
            p.is_dir()
            and p.name.startswith("step_")
            and p.name[5:].isdigit()
            and (p / DONE).exists()
        ):
            found.append((int(p.name[5:]), p))
    return [p for _, p in sorted(found)]
