"""The served LoRA adapters: which names exist, which weights are loaded, and the LRU between them.

Two sets, as in vLLM:

- *registered* adapters are the names a client can ask for (``/v1/models`` lists them), each with
  the path it was loaded from. Only the event loop reads and changes them.
- *loaded* adapters hold weights in the model, at most ``max_cpu_loras`` of them. Loading one
  more evicts the least recently used that the running batch does not need; an evicted adapter
  stays registered and is loaded again from its path when a request names it. Only the engine's
  worker thread touches the model, so loading, eviction and sampling never overlap.

Inside the model an adapter lives under a PEFT name of its own (``slot0``, ``slot1``, ...): served
names may hold characters PEFT refuses (dots), and an in-place reload loads the new weights
under a fresh slot before the old one is deleted, so a failed reload leaves the old weights.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel

from burnish.models.lora import is_lora
from burnish.serve.errors import ServeError, bad_request

__all__ = ["AdapterSpec", "AdapterStore", "adapter_not_found"]


@dataclass(frozen=True)
class AdapterSpec:
    """A registered adapter: what a client named it, where its files are, its LoRA rank."""

    name: str
    path: str
    """The path as the client or command line gave it (``/v1/models`` shows it as ``root``)."""
    resolved: Path
    """The directory the weights are read from (symlinks resolved)."""
    rank: int
    """The largest LoRA rank in its config (``r`` and any ``rank_pattern`` entry)."""


def adapter_not_found(name: str, path: str) -> ServeError:
    """vLLM's 404 for an adapter path with no adapter (its ``LoRAAdapterNotFoundError``)."""
    return ServeError(
        f"Loading lora {name} failed: No adapter found for {path}",
        HTTPStatus.NOT_FOUND,
        "NotFoundError",
    )


def _adapter_rank(config: dict[str, Any]) -> int:
    ranks = [int(config.get("r", 8))]
    ranks += [int(v) for v in (config.get("rank_pattern") or {}).values()]
    return max(ranks)


class AdapterStore:
    """Registered adapters, loaded adapter weights and their LRU (see the module docstring).

    Args:
        model: the base transformers model; PEFT injects LoRA layers into it in place.
        max_cpu_loras: most adapters whose weights stay loaded.
        max_lora_rank: largest LoRA rank accepted.
        adapter_root: when set, adapters loaded at run time must lie inside this directory
            (relative paths are taken relative to it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        max_cpu_loras: int,
        max_lora_rank: int = 16,
        adapter_root: str | Path | None = None,
    ) -> None:
        if is_lora(model):
            raise TypeError("AdapterStore takes the base model, not a PEFT model")
        if max_cpu_loras < 1:
            raise ValueError(f"max_cpu_loras must be >= 1, got {max_cpu_loras}")
        self.base = model
        self.max_cpu_loras = max_cpu_loras
        self.max_lora_rank = max_lora_rank
        self.adapter_root = Path(adapter_root).resolve() if adapter_root else None
        self.registered: dict[str, AdapterSpec] = {}
        """Served adapters by name, in the order they were registered (event loop only)."""
        self._peft: PeftModel | None = None
        self._loaded: OrderedDict[str, tuple[str, AdapterSpec]] = OrderedDict()  # LRU first
        self._slots = itertools.count()
        self.evictions = 0
        """Adapters evicted so far (for tests and logs)."""

    # ---- the event loop's side ----------------------------------------------------------

    def check(self, name: str, path: str, *, runtime: bool) -> AdapterSpec:
        """Validate an adapter before loading it: its path, its config and its rank.

        Args:
            name: the name it is to be served under.
            path: its directory.
            runtime: loaded through ``/v1/load_lora_adapter`` (the ``adapter_root`` check
                applies; adapters named on the command line are trusted).

        Raises:
            ServeError: 404 when there is no adapter at the path; 400 when the path is outside
                ``adapter_root``, the config is not a LoRA config, or the rank is too large.
        """
        given = Path(path).expanduser()
        if runtime and self.adapter_root is not None:
            resolved = (self.adapter_root / given).resolve()
            if not resolved.is_relative_to(self.adapter_root):
                raise bad_request(
                    f"Loading lora {name} failed: {path} is outside the adapter root "
                    f"{self.adapter_root} (--adapter-root)",
                    param="lora_path",
                )
        else:
            resolved = given.resolve()
        config_file = resolved / "adapter_config.json"
        if not config_file.is_file():
            raise adapter_not_found(name, path)
        try:
            config = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise bad_request(
                f"Loading lora {name} failed: unreadable adapter_config.json: {e}"
            ) from e
        if str(config.get("peft_type", "LORA")).upper() != "LORA":
            raise bad_request(
                f"Loading lora {name} failed: {path} is a {config.get('peft_type')} adapter, "
                "not LoRA"
            )
        rank = _adapter_rank(config)
        if rank > self.max_lora_rank:
            raise bad_request(
                f"Loading lora {name} failed: LoRA rank {rank} is greater than max_lora_rank "
                f"{self.max_lora_rank} (start the server with a larger --max-lora-rank)",
                param="lora_path",
            )
        return AdapterSpec(name=name, path=path, resolved=resolved, rank=rank)

    # ---- the worker thread's side -------------------------------------------------------

    def loaded_names(self) -> list[str]:
        """Names whose weights are loaded, least recently used first."""
        return list(self._loaded)

    def ensure_one(self, spec: AdapterSpec, pinned: set[str]) -> str:
        """Make an adapter of a batch loaded and return its PEFT slot.

        An adapter already loaded from the same registration is reused and marked used;
        otherwise it is loaded, evicting least recently used adapters not in ``pinned`` (the
        other adapters of the batch).
        """
        held = self._loaded.get(spec.name)
        if held is not None and held[1] == spec:
            self._loaded.move_to_end(spec.name)
            return held[0]
        return self.load(spec, pinned=pinned)

    def load(self, spec: AdapterSpec, pinned: set[str] | frozenset[str] = frozenset()) -> str:
        """Load (or reload in place) an adapter's weights; returns its PEFT slot.

        Raises:
            ServeError: 404 if its files are gone, 400 if PEFT cannot load them onto this model.
        """
        if spec.name not in self._loaded:
            self._make_room(pinned | {spec.name})
        slot = f"slot{next(self._slots)}"
        if not (spec.resolved / "adapter_config.json").is_file():
            raise adapter_not_found(spec.name, spec.path)
        try:
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(
                    self.base, str(spec.resolved), adapter_name=slot, is_trainable=False
                )
            else:
                self._peft.load_adapter(str(spec.resolved), adapter_name=slot, is_trainable=False)
        except (ValueError, RuntimeError, KeyError, OSError) as e:
            self._discard_slot(slot)
            raise bad_request(f"Loading lora {spec.name} failed: {e}") from e
        previous = self._loaded.pop(spec.name, None)
        if previous is not None:
            self._discard_slot(previous[0])
        self._loaded[spec.name] = (slot, spec)
        return slot

    def drop(self, name: str) -> None:
        """Delete an adapter's weights if they are loaded (after it was unregistered)."""
        held = self._loaded.pop(name, None)
        if held is not None:
            self._discard_slot(held[0])

    @property
    def has_lora_layers(self) -> bool:
        """Whether the model has LoRA layers (then every batch row names its adapter)."""
        return self._peft is not None

    def _make_room(self, pinned: set[str] | frozenset[str]) -> None:
        while len(self._loaded) >= self.max_cpu_loras:
            victim = next((n for n in self._loaded if n not in pinned), None)
            if victim is None:
                raise RuntimeError(
                    f"cannot load more than max_cpu_loras={self.max_cpu_loras} adapters at once "
                    f"(all loaded adapters are in use: {sorted(pinned)})"
                )
            self.drop(victim)
            self.evictions += 1

    def _discard_slot(self, slot: str) -> None:
        if self._peft is None or slot not in self._peft.peft_config:
            return
        others = [s for s in self._peft.peft_config if s != slot]
        if self._peft.active_adapter == slot and others:
            # rows always name their adapter, so which one PEFT calls active does not matter;
            # moving it first spares PEFT's warning about deleting the active adapter
            self._peft.set_adapter(others[0])
        self._peft.delete_adapter(slot)
