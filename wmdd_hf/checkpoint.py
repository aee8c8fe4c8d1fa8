"""What a run leaves in ``output_dir`` and how a later run finds it again.

Layout::

    output_dir/
      run_config.json          arguments that determine the result, teacher and dataset fingerprints
      statistics.pt            class statistics: per-class norm moments and counts (written last)
      statistics_features/     class_00000.safetensors ...: each class's kept features and rows (feature_store)
      barycenters.pt           {class id: positions (m, D), weights (m,), costs}
      synthetic/batch_00000.pt one file per finished class batch (images float32 in [0, 1], labels, history)
      soft_labels.pt           probabilities and (optionally) augmented-view labels
      events.jsonl             one line per finished unit of work (stage, batch, process)
      distilled/               the distilled set in Hub layout (see wmdd_hf.hub)

Every file is written to a temporary name and renamed into place, so a run killed at any moment leaves either the
whole file or none of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


class OutputDirError(ValueError):
    """``output_dir`` holds a different run; the message names the differing arguments."""


def temporary_name(path: Path) -> Path:
    """``.<name>.<pid>.tmp`` beside ``path``: one name per process, and the pattern
    :func:`remove_stale_temporaries` recognises."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, replace_folder: bool = False) -> Iterator[Path]:
    """Yields a temporary name beside ``path`` to write a file or a folder to; on success renames it onto ``path``
    (with ``replace_folder``, after deleting the folder already there: the caller has checked it may go), on error
    deletes it. A run killed at any moment leaves the old ``path`` or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    _remove(tmp)  # a leftover of this very pid
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if replace_folder and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """Saves ``obj`` (tensors, numpy arrays, numbers, strings, lists, tuples, dicts) so that :func:`load` reads it
    back with ``weights_only=True``; written to a temporary name, then renamed."""
    with atomic_path(path) as tmp:
        torch.save(_encode(obj), tmp)


_NUMPY = "__numpy__"


def _encode(obj: Any) -> Any:
    """numpy arrays -> ``{"__numpy__": tensor}`` and numpy scalars -> Python numbers (weights_only-safe types)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        return {_NUMPY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_NUMPY}:
            return obj[_NUMPY].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Writes ``text`` to ``path`` through a temporary name."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load(path: str | os.PathLike) -> Any:
    """Loads a checkpoint written by :func:`atomic_save` with ``weights_only=True``: tensors, numbers, strings,
    lists and dicts only. A file that would run code when unpickled is refused (``UnpicklingError``)."""
    return _decode(torch.load(path, weights_only=True))


#: Everything a run writes into output_dir (``overwrite_output_dir`` removes these and nothing else).
RUN_FILES = (
    "run_config.json",
    "statistics.pt",
    "barycenters.pt",
    "soft_labels.pt",
    "events.jsonl",
    "metrics.json",
    "synthetic_grid.png",
    "barycenters_pca.png",
)
RUN_FOLDERS = ("statistics_features", "synthetic", "distilled")


def remove_run_files(output_dir: Path) -> None:
    """Deletes the files and folders a previous run wrote into ``output_dir`` (only those; see RUN_FILES)."""
    import shutil

    for name in RUN_FILES:
        (output_dir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        folder = output_dir / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    remove_stale_temporaries(output_dir)


def remove_stale_temporaries(output_dir: Path) -> list[Path]:
    """Deletes ``.<name>.<pid>.tmp`` files and folders left by writes that were killed (this library's naming, in
    output_dir, output_dir/statistics_features and output_dir/synthetic only; a live process's own temporaries are
    kept). Returns what was removed."""
    removed = []
    for folder in (output_dir, output_dir / "statistics_features", output_dir / "synthetic"):
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            parts = tmp.name.rsplit(".", 2)
            pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
            if pid is None or (pid != os.getpid() and not _alive(pid)):
                if tmp.is_dir() and not tmp.is_symlink():  # a half-written distilled folder
                    import shutil

                    shutil.rmtree(tmp)
                else:
                    tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fingerprint_module(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's parameters and buffers, in state-dict order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_run_config(output_dir: Path, config: dict, overwrite: bool, defaults: dict | None = None) -> bool:
    """Compares ``config`` with the one saved in ``output_dir``.

    Returns True when a previous run with the same config is there (resume), False when the folder is new or
    ``overwrite`` is set (the caller starts afresh). Raises :class:`OutputDirError` naming the differing keys otherwise.
    A key the saved config lacks (an argument added by a later version) matches when the new value is its default
    in ``defaults``: such an argument at its default does not change the result.
    """
    path = output_dir / "run_config.json"
    if not path.exists():
        return False
    saved = json.loads(path.read_text())
    if overwrite:
        return False
    defaults = defaults or {}
    differing = sorted(
        k
        for k in set(saved) | set(config)
        if saved.get(k) != config.get(k) and not (k not in saved and k in defaults and config.get(k) == defaults[k])
    )
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
