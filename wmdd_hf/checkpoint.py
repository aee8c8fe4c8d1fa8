"""What a run leaves in ``output_dir`` and how a later run finds it again.

Layout::

    output_dir/
      run_config.json          arguments that determine the result, teacher and dataset fingerprints
      statistics.pt            class statistics (features, rows, norm moments)
      barycenters.pt           {class id: positions (m, D), weights (m,), costs}
      synthetic/batch_00000.pt one file per finished class batch (images float32 in [0, 1], labels, history)
      soft_labels.pt           probabilities and (optionally) augmented-view labels
      events.jsonl             one line per finished unit of work (stage, batch, process)
      distilled/               the distilled set in Hub layout (see wmdd_hf.hub)

Every file is written to a temporary name and renamed into place, so a run killed at any moment leaves either the
whole file or none of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import torch


class OutputDirError(ValueError):
    """``output_dir`` holds a different run; the message names the differing arguments."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> Any:
    return torch.load(path, weights_only=False)


def fingerprint_module(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_run_config(output_dir: Path, config: dict, overwrite: bool) -> bool:
    """Compares ``config`` with the one saved in ``output_dir``.

    Returns True when a previous run with the same config is there (resume), False when the folder is new or
    ``overwrite`` is set (the caller starts afresh). Raises :class:`OutputDirError` naming the differing keys otherwise.
    """
    path = output_dir / "run_config.json"
    if not path.exists():
        return False
    saved = json.loads(path.read_text())
    if overwrite:
        return False
    differing = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in differing)
        raise OutputDirError(
            f"{output_dir} holds a different run ({details}). Use another output_dir, the same arguments to resume, "
            "or overwrite_output_dir=True to start afresh."
        )
    return True


def log_event(output_dir: Path, **event: Any) -> None:
    """Appends one JSON line to ``events.jsonl`` (a record of finished work, used to count recomputation)."""
    event = {"time": round(time.time(), 3), "pid": os.getpid(), **event}
    with open(output_dir / "events.jsonl", "a") as f:
        f.write(json.dumps(event) + "\n")


def read_events(output_dir: str | os.PathLike) -> list[dict]:
    path = Path(output_dir) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
