"""The WMDD stages as functions over one :class:`Run`: what :class:`wmdd_hf.Distiller` calls in order.

Each stage distributes its work with Accelerate, checkpoints its result in ``output_dir`` (layout in
:mod:`wmdd_hf.checkpoint`) and, when that file exists, loads it instead of recomputing (resume):

1. :func:`statistics_stage`  data-parallel over rows; moments merged exactly on every process, each class's features
                             sent to the process that owns it, capped and written there (one shard per class)
2. :func:`barycenter_stage`  sharded by class, the same owners
3. :func:`synthesis_stage`   sharded by class batch; every finished batch is saved at once
4. :func:`soft_label_stage`  main process
5. :func:`save_stage`        the distilled set in Hub layout, the pictures, ``metrics.json`` inputs

Per-class seeds derive from the run seed and the class id (:func:`class_seed`), so the result does not depend on the
number of processes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, Sequence, Value

from . import checkpoint as ckpt
from .arguments import DistillationArguments
from .backbones import Backbone
from .barycenter import wasserstein_barycenter
from .data import DatasetValidationError, decode_all, fits_in_memory, iterate_batches, uint8_to_png_images
from .feature_store import FOLDER, ClassShards, owned_classes, write_class
from .scores import colour_spread
from .soft_labels import ViewLabels, augmented_soft_labels, soft_labels, storage_bytes, teacher_outputs
from .statistics import ClassStatistics, collect_class_statistics
from .synthesis import NormTargets, synthesize_batch


def class_seed(seed: int, class_id: int) -> int:
    """The seed of one class (or of the batch that starts with it): independent of the number of processes."""
    return (seed * 1_000_003 + class_id * 7_919) % (2**31 - 1)


@dataclass
class Run:
    """What every stage reads: the arguments, the teacher, the data and where results go."""

    accelerator: object
    args: DistillationArguments
    teacher: Backbone
    dataset: Dataset | IterableDataset
    image_column: str
    label_column: str
    class_names: list[str]
    log: Callable[[dict], None] = field(default=lambda record: None)
    #: ``(images, labels, rows)`` of this process's share, set by decode_first and used once by the statistics pass
    decoded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def output_dir(self) -> Path:
        return Path(self.args.output_dir)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def progress(self) -> bool:
        return self.accelerator.is_main_process and not self.args.disable_tqdm

    def class_batches(self) -> list[list[int]]:
        """The classes optimised together, in order (identical whatever the number of processes)."""
        per = self.args.classes_per_batch
        return [list(range(s, min(s + per, self.num_classes))) for s in range(0, self.num_classes, per)]


def decode_first(run: Run) -> None:
    """Reads every image of a map-style dataset that fits in memory (cached; the statistics pass reuses it), so a
    corrupt image is reported with its row before any stage starts."""
    ds = run.dataset
    if isinstance(ds, Dataset) and fits_in_memory(ds, run.teacher.spec):
        with run.accelerator.main_process_first():
            images, labels = decode_all(
                ds, run.teacher.spec, run.image_column, run.label_column, run.args.num_workers, run.progress
            )
        run.decoded = own_share(run, images, labels)


def own_share(run: Run, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This process's rows of the statistics pass (all of them with one process) as ``(images, labels, rows)``;
    with several processes a copy of the share, so the whole array (memory-mapped from the cache) is not held."""
    acc = run.accelerator
    if acc.num_processes == 1:
        return images, labels, torch.arange(len(images))
    with acc.split_between_processes(list(range(len(images)))) as rows:
        idx = torch.tensor(rows, dtype=torch.long)
    return images[idx].clone(), labels[idx].clone(), idx


# ----------------------------------------------------------------------------------------------------------------
# 1. statistics
# ----------------------------------------------------------------------------------------------------------------
def statistics_stage(run: Run) -> ClassStatistics:
    path = run.output_dir / "statistics.pt"
    if path.exists():
        run.decoded = None  # resumed: the decoded array is not needed
        return ClassStatistics.load(path)
    acc, a, spec, ds = run.accelerator, run.args, run.teacher.spec, run.dataset
    views = a.synthesis_config().augment if a.statistics_view == "augmented" else None
    collect = dict(max_features_per_class=a.max_features_per_class, seed=a.seed, progress=run.progress, views=views)
    if isinstance(ds, Dataset):
        with acc.split_between_processes(list(range(len(ds)))) as rows:
            if fits_in_memory(ds, spec):
                if run.decoded is None:  # a Distiller that skipped the decode-first check
                    decode_first(run)
                images, labels, idx = run.decoded
                assert idx.tolist() == list(rows), "the decoded share and the pass's share must be the same rows"
                size = a.stats_batch_size
                batches = (  # a generator: one batch copied at a time, not a second copy of the data
                    (images[s : s + size], labels[s : s + size], idx[s : s + size]) for s in range(0, len(idx), size)
                )
            else:
                batches = iterate_batches(
                    ds, spec, run.image_column, run.label_column, a.stats_batch_size, a.num_workers, indices=rows
                )
            total = (len(rows) + a.stats_batch_size - 1) // a.stats_batch_size
            stats = collect_class_statistics(run.teacher, batches, run.num_classes, total=total, **collect)
        run.decoded = None  # the pass is the only reader: free the array
    else:
        from datasets.distributed import split_dataset_by_node

        shard = split_dataset_by_node(ds, rank=acc.process_index, world_size=acc.num_processes)
        batches = iterate_batches(shard, spec, run.image_column, run.label_column, a.stats_batch_size)
        stats = collect_class_statistics(run.teacher, batches, run.num_classes, **collect)
    if acc.num_processes > 1:
        stats = send_features_to_owners(acc, stats).capped(a.max_features_per_class, a.seed)
    short = [
        f"{run.class_names[k]!r} ({int(stats.counts[k])})"
        for k in range(run.num_classes)
        if stats.counts[k] < a.images_per_class
    ]
    if short:
        raise DatasetValidationError(
            f"Class(es) {', '.join(short)} had fewer than images_per_class = {a.images_per_class} examples in the "
            "statistics pass. Lower images_per_class, or filter the ClassLabel to the classes that have enough."
        )
    folder = run.output_dir / FOLDER
    mine = owned_classes(run.num_classes, acc.num_processes, acc.process_index)
    for k in mine:  # every process writes the shards of the classes it owns, and holds no other class's features
        write_class(folder, k, stats.features[k], stats.rows[k])
    held = sum(len(stats.rows[k]) for k in mine)
    ckpt.log_event(run.output_dir, stage="statistics_features", classes=mine, rows=held, process=acc.process_index)
    stored = ClassStatistics(
        ClassShards(folder, list(range(run.num_classes)), "features"),
        ClassShards(folder, list(range(run.num_classes)), "rows"),
        stats.norms,
        stats.counts,
        stats.layer_kinds,
    )
    acc.wait_for_everyone()  # every shard is on disk before statistics.pt says the pass is done
    if acc.is_main_process:
        ckpt.atomic_save(stored.summary_state(), path)
        ckpt.log_event(run.output_dir, stage="statistics", process=acc.process_index)
    return stored


def send_features_to_owners(acc, stats: ClassStatistics) -> ClassStatistics:
    """The statistics of several processes' partial passes, merged: norm moments and counts on every process (exact,
    in process order), and each class's features and rows only on the process that owns it (:func:`owned_classes`),
    concatenated in process order. One ``gather_object`` per owner, so no process ever receives another owner's
    classes: with P processes each holds about 1/P of the kept features."""
    import torch.distributed as dist
    from accelerate.utils import gather_object

    num_classes, rank = len(stats.counts), acc.process_index
    parts = gather_object([ClassStatistics({}, {}, stats.norms, stats.counts, stats.layer_kinds)])  # no features
    summary = functools.reduce(ClassStatistics.merge, parts)
    local_features, local_rows = dict(stats.features), dict(stats.rows)
    features, rows = {}, {}
    for owner in range(acc.num_processes):
        classes = owned_classes(num_classes, acc.num_processes, owner)
        part = {k: (local_features.pop(k), local_rows.pop(k)) for k in classes}  # sent, then dropped here
        received = [None] * acc.num_processes if rank == owner else None
        dist.gather_object(part, received, dst=owner)
        del part
        if rank == owner:
            for k in classes:
                features[k] = torch.cat([p[k][0] for p in received])
                rows[k] = torch.cat([p[k][1] for p in received])
            del received
    return ClassStatistics(features, rows, summary.norms, summary.counts, summary.layer_kinds)


# ----------------------------------------------------------------------------------------------------------------
# 2. barycenters
# ----------------------------------------------------------------------------------------------------------------
def barycenter_stage(run: Run, stats: ClassStatistics) -> dict[int, dict]:
    path = run.output_dir / "barycenters.pt"
    if path.exists():
        return ckpt.load(path)
    acc, a = run.accelerator, run.args
    result = {}
    for k in owned_classes(run.num_classes, acc.num_processes, acc.process_index):  # those whose shards it wrote
        r = wasserstein_barycenter(
            stats.features[k].numpy(),
            a.images_per_class,
            weights=a.barycenter_weights,
            iterations=a.barycenter_iterations,
            damping=a.barycenter_damping,
            solver=a.barycenter_solver,
            seed=class_seed(a.seed, k),
        )
        result[k] = {"positions": r.positions, "weights": r.weights, "costs": r.costs}
    if acc.num_processes > 1:
        from accelerate.utils import gather_object

        result = {k: v for part in gather_object([result]) for k, v in part.items()}
    if acc.is_main_process:
        ckpt.atomic_save(result, path)
        ckpt.log_event(run.output_dir, stage="barycenters", process=acc.process_index)
        run.log({"w2_cost_mean": float(np.mean([result[k]["costs"][-1] for k in sorted(result)]))})
    return result


# ----------------------------------------------------------------------------------------------------------------
# 3. synthesis
# ----------------------------------------------------------------------------------------------------------------
def nearest_real_rows(stats: ClassStatistics, bary: dict, k: int, m: int) -> list[int]:
    """Dataset rows of the real images whose features are nearest to class k's barycenter points (distinct rows)."""
    from .baselines import nearest_indices

    idx = nearest_indices(stats.features[k].numpy(), np.asarray(bary[k]["positions"])[:m])
    return [int(stats.rows[k][i]) for i in idx]


def initial_images(
    run: Run, classes: list[int], stats: ClassStatistics, bary: dict, generator: torch.Generator
) -> torch.Tensor:
    """``(len(classes) * IPC, C, H, W)`` starting pixels in [0, 1]: real images nearest to the points (``real``),
    mosaics of the best real crops near each point (``patches``, :mod:`wmdd_hf.mosaic`), or noise."""
    m, spec = run.args.images_per_class, run.teacher.spec
    if run.args.init == "patches":
        from .mosaic import mosaic, nearest_rows

        out = []
        for k in classes:
            for point in np.asarray(bary[k]["positions"])[:m]:
                rows = nearest_rows(stats.features[k], stats.rows[k], point, run.args.patch_candidates)
                real = torch.stack([spec.to_uint8(run.dataset[r][run.image_column]) for r in rows]).float() / 255
                out.append(mosaic(run.teacher, real, k, grid=run.args.patch_grid, generator=generator))
        return torch.stack(out)
    if run.args.init == "real":
        rows = [r for k in classes for r in nearest_real_rows(stats, bary, k, m)]
        images = torch.stack([spec.to_uint8(run.dataset[int(r)][run.image_column]) for r in rows])
        return images.float() / 255
    mean = run.teacher.mean.cpu().view(1, -1, 1, 1)
    std = run.teacher.std.cpu().view(1, -1, 1, 1)
    noise = torch.randn(len(classes) * m, spec.channels, *spec.size, generator=generator)
    return (mean + std * noise).clamp(0, 1)


def synthesis_stage(
    run: Run,
    stats: ClassStatistics,
    bary: dict,
    on_step: Callable[[int], None] = lambda step: None,
    on_log: Callable[[dict, list[int]], None] = lambda record, classes: None,
    on_batch: Callable[[int], None] = lambda first_step: None,
) -> tuple[int, int]:
    """Synthesises every class batch this process owns that is not on disk yet. ``on_batch(first global step)``
    before a batch, ``on_step(global_step)`` after every step, ``on_log(record, classes)`` every ``logging_steps``.
    Returns ``(synthesized, skipped)`` batch counts."""
    from tqdm.auto import tqdm

    acc, a = run.accelerator, run.args
    config = a.synthesis_config()
    if a.torch_compile:  # in place: module names, and so the norm-layer statistics' keys, stay the same
        run.teacher.model.compile(backend=a.torch_compile_backend)
    targets = NormTargets.from_moments(stats.norms, a.bn_loss) if a.bn_loss != "none" else None
    folder = run.output_dir / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    synthesized = skipped = 0
    with acc.split_between_processes(list(enumerate(run.class_batches()))) as mine:
        bar = tqdm(total=len(mine) * a.iterations, desc="synthesis", unit="step", disable=not run.progress)
        for index, classes in mine:
            path = folder / f"batch_{index:05d}.pt"
            if path.exists():
                skipped += 1
                bar.update(a.iterations)
                continue
            generator = torch.Generator().manual_seed(class_seed(a.seed, classes[0]))
            init = initial_images(run, classes, stats, bary, generator)
            labels = torch.tensor([k for k in classes for _ in range(a.images_per_class)])
            points = torch.cat([torch.from_numpy(bary[k]["positions"]) for k in classes])
            weights = torch.cat([torch.from_numpy(np.asarray(bary[k]["weights"], dtype=np.float32)) for k in classes])
            start_step = index * a.iterations

            def step_done(it, start_step=start_step):
                bar.update(1)
                on_step(start_step + it + 1)

            def logged(it, record, classes=classes):
                bar.set_postfix(classes=f"{classes[0]}-{classes[-1]}", loss=f"{record['loss']:.4g}")
                on_log(record, classes)

            on_batch(start_step)
            images, history = synthesize_batch(  # precision is the config's (synthesis_precision), not Accelerate's
                run.teacher, init, labels, points, weights, targets, config, generator, logged, step_done
            )
            ckpt.atomic_save(
                {"classes": classes, "images": images.float().cpu(), "labels": labels, "history": history}, path
            )
            ckpt.log_event(run.output_dir, stage="synthesis", batch=index, classes=classes, process=acc.process_index)
            synthesized += 1
        bar.close()
    acc.wait_for_everyone()
    return synthesized, skipped


def collect_synthetic(run: Run) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Every batch file, in class order: uint8 images ``(N, C, H, W)``, labels ``(N,)``, per-batch loss histories."""
    images, labels, histories = [], [], []
    for index, _ in enumerate(run.class_batches()):
        part = ckpt.load(run.output_dir / "synthetic" / f"batch_{index:05d}.pt")
        images.append(part["images"])
        labels.append(part["labels"])
        histories.append({"classes": part["classes"], "history": part["history"]})
    pixels = torch.cat(images)
    return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), torch.cat(labels), histories


# ----------------------------------------------------------------------------------------------------------------
# 4. soft labels
# ----------------------------------------------------------------------------------------------------------------
def soft_label_stage(run: Run, images_uint8: torch.Tensor) -> dict:
    """``{"probs" (N, K)}`` and, with ``soft_label_epochs``, the stored views and the teacher's logits on them."""
    path = run.output_dir / "soft_labels.pt"
    if path.exists():
        return ckpt.load(path)
    a = run.args
    pixels = images_uint8.float() / 255
    result = {"probs": soft_labels(run.teacher, pixels, a.temperature)}
    if a.soft_label_epochs > 0:
        views = augmented_soft_labels(
            run.teacher, pixels, a.soft_label_epochs, a.synthesis_config().augment, seed=a.seed
        )
        result.update(views=views.views, partners=views.partners, boxes=views.boxes, logits=views.logits)
    result["bytes"] = storage_bytes(*[v for v in result.values() if isinstance(v, torch.Tensor)])
    ckpt.atomic_save(result, path)
    return result


# ----------------------------------------------------------------------------------------------------------------
# 5. the distilled set, its metrics and pictures
# ----------------------------------------------------------------------------------------------------------------
def build_dataset(run: Run, images_uint8: torch.Tensor, labels: torch.Tensor, soft: dict, bary: dict) -> Dataset:
    """The default config: ``image`` (PNG), ``label``, ``soft_label``, ``barycenter_weight``."""
    features = Features(
        {
            "image": Image(),
            "label": ClassLabel(names=run.class_names),
            "soft_label": Sequence(Value("float32")),
            "barycenter_weight": Value("float32"),
        }
    )
    weights = np.concatenate([np.asarray(bary[k]["weights"], dtype=np.float32) for k in range(run.num_classes)])
    return Dataset.from_dict(
        {
            "image": uint8_to_png_images(images_uint8),
            "label": labels.tolist(),
            "soft_label": soft["probs"].float().numpy().tolist(),
            "barycenter_weight": weights.tolist(),
        },
        features=features,
    )


def views_dataset(soft: dict) -> Dataset | None:
    """The ``soft_labels`` config (one row per epoch and image), or None when no views were stored."""
    if "views" not in soft:
        return None
    labels = ViewLabels(soft["views"], soft["partners"], soft["boxes"], soft["logits"])
    features = Features(
        {
            "epoch": Value("int32"),
            "image_index": Value("int32"),
            "view": Sequence(Value("float32"), length=5),
            "partner": Value("int32"),
            "box": Sequence(Value("int32"), length=4),
            "logits": Sequence(Value("float16")),
        }
    )
    return Dataset.from_dict(labels.to_columns(), features=features)


@torch.no_grad()
def point_distances(teacher: Backbone, images_uint8: torch.Tensor, labels: torch.Tensor, stats, bary: dict) -> dict:
    """Per class: how close the synthetic images got to their barycenter points, against how close real images are.

    ``synthetic_to_own_point``: mean Euclidean distance between the teacher feature of each synthetic image
    (un-augmented, as stored: uint8 pixels) and its own point. ``real_median_to_nearest_point``: median over the
    class's kept real features of the distance to the nearest point. Feature units (the teacher's penultimate layer).
    """
    feats = teacher_outputs(teacher, images_uint8)[1].cpu()
    out = {}
    for k in sorted(bary):
        points = torch.as_tensor(np.asarray(bary[k]["positions"]), dtype=torch.float32)
        own = feats[labels == k][: len(points)]
        real = stats.features[k].float()
        out[str(k)] = {
            "synthetic_to_own_point": float((own - points[: len(own)]).norm(dim=1).mean()),
            "real_median_to_nearest_point": float(np.median(torch.cdist(real, points).min(dim=1).values.numpy())),
        }
    return out


def final_metrics(run: Run, images_uint8, labels, soft, stats, bary, histories) -> dict:
    """What ``metrics.json`` reports about the set (losses are sums over the class batches' first and last logs)."""
    first = [h["history"][0] for h in histories]
    last = [h["history"][-1] for h in histories]
    distances = point_distances(run.teacher, images_uint8, labels, stats, bary)
    return {
        "num_images": len(images_uint8),
        "feature_loss_start": float(sum(r["feature_loss"] for r in first)),
        "feature_loss_end": float(sum(r["feature_loss"] for r in last)),
        "bn_loss_start": float(sum(r["bn_loss"] for r in first)),
        "bn_loss_end": float(sum(r["bn_loss"] for r in last)),
        "teacher_agreement": float((soft["probs"].float().argmax(1) == labels).float().mean()),
        "w2_cost_mean": float(np.mean([bary[k]["costs"][-1] for k in bary])),
        "colour_spread": colour_spread(images_uint8),
        "soft_label_bytes": int(soft["bytes"]),
        "point_distances": distances,
        "classes_closer_than_median_real": int(
            sum(d["synthetic_to_own_point"] < d["real_median_to_nearest_point"] for d in distances.values())
        ),
    }


def save_stage(run: Run, dataset: Dataset, soft: dict, images_uint8, labels, stats, bary, metadata: dict) -> None:
    """Pictures (grid, barycenter PCA) and the distilled folder ``output_dir/distilled`` in Hub layout."""
    from .hub import save_distilled
    from .visualization import save_barycenter_pca, save_image_grid

    grid = run.output_dir / "synthetic_grid.png"
    if run.args.save_plots:
        save_image_grid(images_uint8, labels, run.class_names, grid)
        save_barycenter_pca(
            stats.features,
            {k: v["positions"] for k, v in bary.items()},
            {k: v["weights"] for k, v in bary.items()},
            run.class_names,
            run.output_dir / "barycenters_pca.png",
        )
    save_distilled(
        run.output_dir / "distilled", dataset, metadata, views_dataset(soft), grid if grid.exists() else None
    )


def dataset_fingerprint(dataset) -> str | None:
    """What identifies the data of a run: the Arrow fingerprint of a map-style dataset. A stream has none (its
    name does not change when its files do): None, and such runs are not resumed."""
    return getattr(dataset, "_fingerprint", None) if isinstance(dataset, Dataset) else None


def run_metadata(run: Run, metrics: dict) -> dict:
    """What the card and ``wmdd_hf.json`` say about a run: arguments (no token), source, teacher, metrics."""
    from .backbones import read_metadata

    teacher_meta = getattr(run.teacher, "metadata", None) or {}
    info = run.dataset.info
    return {
        "arguments": {k: v for k, v in run.args.to_dict().items() if k != "hub_token"},
        "source_dataset": getattr(info, "dataset_name", None) or "unknown",
        "license": getattr(info, "license", None) or "other",
        "source_split": str(getattr(run.dataset, "split", "train") or "train"),
        "num_images": metrics.get("num_images"),
        "num_classes": run.num_classes,
        "class_names": run.class_names,
        "teacher": {
            "id": teacher_meta.get("id", type(run.teacher.model).__name__),
            "architecture": teacher_meta.get("architecture", type(run.teacher.model).__name__),
            "test_acc": teacher_meta.get("test_acc"),
            "fingerprint": ckpt.fingerprint_module(run.teacher),
        },
        "metrics": metrics,
        "repo_id": run.args.hub_dataset_id,
        **({"teacher_folder_metadata": read_metadata(teacher_meta["folder"])} if "folder" in teacher_meta else {}),
    }
