"""Kept teacher features on disk, one safetensors file per class, read back one class at a time.

The statistics pass keeps up to ``max_features_per_class`` penultimate features per class (ImageNet-1K with a
ResNet-50: about 10 GB in all). Held in one ``statistics.pt`` and sent to every process, they would cost that much
host memory per process. Instead each class's features go to the one process that owns the class (the one that
computes its barycenter, :func:`owned_classes`), which writes them here::

    output_dir/statistics_features/class_00003.safetensors   {"features": float32 (n_k, D), "rows": int64 (n_k,)}

and every later reader (barycenters, ``init="real"``/``"patches"``, metrics, the PCA picture, coreset baselines)
opens the class it needs through :class:`ClassShards`, a read-only ``{class id: tensor}`` mapping. Safetensors holds
tensors only: reading a shard never runs code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

FOLDER = "statistics_features"


def owned_classes(num_classes: int, num_processes: int, process_index: int) -> list[int]:
    """The classes process ``process_index`` owns: contiguous blocks, the first ``num_classes % num_processes``
    processes one class more (Accelerate's ``split_between_processes`` rule). Known before any data is read."""
    per, extra = divmod(num_classes, num_processes)
    start = process_index * per + min(process_index, extra)
    return list(range(start, start + per + (1 if process_index < extra else 0)))


def class_owner(class_id: int, num_classes: int, num_processes: int) -> int:
    """The process that owns ``class_id`` (inverse of :func:`owned_classes`)."""
    for p in range(num_processes):
        owned = owned_classes(num_classes, num_processes, p)
        if owned and owned[0] <= class_id <= owned[-1]:
            return p
    raise ValueError(f"class {class_id} is outside 0..{num_classes - 1}")


def shard_path(folder: str | os.PathLike, class_id: int) -> Path:
    return Path(folder) / f"class_{class_id:05d}.safetensors"


def write_class(folder: str | os.PathLike, class_id: int, features: torch.Tensor, rows: torch.Tensor) -> Path:
    """Writes one class's ``features (n, D)`` float32 and dataset ``rows (n,)`` int64; temporary name, then rename."""
    from safetensors.torch import save_file

    from .checkpoint import atomic_path

    path = shard_path(folder, class_id)
    with atomic_path(path) as tmp:
        save_file(
            {"features": features.float().contiguous(), "rows": rows.to(torch.int64).contiguous()},
            str(tmp),
            metadata={"class_id": str(class_id)},
        )
    return path


class ClassShards(Mapping):
    """``{class id: tensor}`` over the shards in ``folder``: ``key`` is ``"features"`` or ``"rows"``. Each access
    reads that one class from disk (a fresh tensor that owns its memory); nothing is cached."""

    def __init__(self, folder: str | os.PathLike, classes: list[int], key: str):
        self.folder, self.classes, self.key = Path(folder), list(classes), key

    def __getitem__(self, class_id: int) -> torch.Tensor:
        from safetensors import safe_open

        if class_id not in self.classes:
            raise KeyError(class_id)
        path = shard_path(self.folder, class_id)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} is missing: the statistics pass of this run did not finish writing its features. Rerun the "
                "distillation with the same output_dir (the pass is recomputed when statistics.pt is absent)."
            )
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(self.key)

    def __iter__(self) -> Iterator[int]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return f"ClassShards({str(self.folder)!r}, {len(self.classes)} classes, {self.key!r})"
