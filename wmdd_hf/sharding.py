"""How work is split between processes, so that a run gives the same set whatever their number.

Classes are the unit: per-class seeds derive from the run seed and the class id (:func:`class_seed`), class batches
are fixed by the arguments alone (:func:`class_batches`), each class has one owning process
(:func:`wmdd_hf.feature_store.owned_classes`), and the statistics pass's partial results are merged exactly
(:func:`send_features_to_owners`).
"""

from __future__ import annotations

import functools

import torch

from .feature_store import owned_classes
from .statistics import ClassStatistics


def class_seed(seed: int, class_id: int) -> int:
    """The seed of one class (or of the batch that starts with it): independent of the number of processes."""
    return (seed * 1_000_003 + class_id * 7_919) % (2**31 - 1)


def class_batches(num_classes: int, classes_per_batch: int) -> list[list[int]]:
    """The classes optimised together, in order: ``[[0, 1, ...], ...]`` (identical whatever the number of
    processes)."""
    per = classes_per_batch
    return [list(range(s, min(s + per, num_classes))) for s in range(0, num_classes, per)]


def own_share(accelerator, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """This process's rows of the statistics pass (all of them with one process) as ``(images, labels, rows)``;
    with several processes a copy of the share, so the whole array (memory-mapped from the cache) is not held."""
    if accelerator.num_processes == 1:
        return images, labels, torch.arange(len(images))
    with accelerator.split_between_processes(list(range(len(images)))) as rows:
        idx = torch.tensor(rows, dtype=torch.long)
    return images[idx].clone(), labels[idx].clone(), idx


def send_features_to_owners(accelerator, stats: ClassStatistics) -> ClassStatistics:
    """The statistics of several processes' partial passes, merged: norm moments and counts on every process (exact,
    in process order), and each class's features and rows only on the process that owns it (:func:`owned_classes`),
    concatenated in process order. One ``gather_object`` per owner, so no process ever receives another owner's
    classes: with P processes each holds about 1/P of the kept features."""
    import torch.distributed as dist
    from accelerate.utils import gather_object

    num_classes, rank = len(stats.counts), accelerator.process_index
    parts = gather_object([ClassStatistics({}, {}, stats.norms, stats.counts, stats.layer_kinds, stats.inputs)])
    summary = functools.reduce(ClassStatistics.merge, parts)
    local_features, local_rows = dict(stats.features), dict(stats.rows)
    features, rows = {}, {}
    for owner in range(accelerator.num_processes):
        classes = owned_classes(num_classes, accelerator.num_processes, owner)
        part = {k: (local_features.pop(k), local_rows.pop(k)) for k in classes}  # sent, then dropped here
        received = [None] * accelerator.num_processes if rank == owner else None
        dist.gather_object(part, received, dst=owner)
        del part
        if rank == owner:
            for k in classes:
                features[k] = torch.cat([p[k][0] for p in received])
                rows[k] = torch.cat([p[k][1] for p in received])
            del received
    return ClassStatistics(features, rows, summary.norms, summary.counts, summary.layer_kinds, summary.inputs)
