"""The ``Distiller``: the WMDD pipeline, shaped like ``transformers.Trainer``.

    distiller = Distiller(model=teacher, args=DistillationArguments(...), train_dataset=train, eval_dataset=test)
    distilled = distiller.distill()          # datasets.Dataset: image, label, soft_label, ..., teacher_logits
    distiller.evaluate()                     # students trained on it, tested on eval_dataset
    distiller.push_to_hub()

:meth:`Distiller.distill` runs five public stages in order; each is a method a subclass may override, takes and
returns typed results (:mod:`wmdd_hf.results`), checkpoints what it made in ``output_dir`` and, when that file
exists, loads it instead of recomputing (resume):

1. :meth:`~Distiller.compute_statistics`  one teacher pass: per-class features and norm-layer moments
2. :meth:`~Distiller.compute_barycenters` per class, a W2 barycenter with ``images_per_class`` points
3. :meth:`~Distiller.synthesize`          pixels optimised per class batch, loss from :meth:`~Distiller.synthesis_loss`
4. :meth:`~Distiller.label`               the teacher's soft labels (main process)
5. :meth:`~Distiller.save`                the distilled set in Hub layout, pictures, ``metrics.json`` (main process)

Work is split by class between Accelerate processes (:mod:`wmdd_hf.sharding`), so the set does not depend on their
number. A rerun with the same ``output_dir`` and arguments skips what is finished; different arguments are refused
(docs/resuming.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, IterableDataset

from . import checkpoint as ckpt
from .arguments import BEFORE_THE_ARGUMENT, DistillationArguments
from .backbones import Backbone, load_backbone
from .barycenter import wasserstein_barycenter
from .data import (
    DatasetValidationError,
    class_names,
    decode_all,
    fits_in_memory,
    iterate_batches,
    teacher_class_order,
    validate_dataset,
)
from .device_decode import decodes_on_device, iterate_device_batches
from .feature_store import FOLDER, ClassShards, owned_classes, write_class
from .results import Barycenters, SoftLabels, SyntheticImages, build_dataset, set_metrics, views_dataset
from .sharding import class_batches, class_seed, own_share, send_features_to_owners
from .soft_labels import augmented_soft_labels, teacher_logits
from .statistics import ClassStatistics, collect_class_statistics
from .synthesis import NormTargets, SynthesisTerms, default_loss, synthesize_batch

logger = logging.getLogger(__name__)

__all__ = ["Distiller", "DistillerState", "class_seed", "nearest_real_rows"]


@dataclass
class DistillerState:
    """What callbacks see (mirrors the fields of ``transformers.TrainerState`` that make sense here)."""

    stage: str = "init"
    global_step: int = 0
    max_steps: int = 0
    epoch: float | None = None
    log_history: list[dict] = field(default_factory=list)
    is_local_process_zero: bool = True
    is_world_process_zero: bool = True
    synthesized_batches: int = 0
    skipped_batches: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)


def nearest_real_rows(stats: ClassStatistics, bary: Barycenters, k: int, m: int) -> list[int]:
    """Dataset rows of the real images whose features are nearest to class k's first ``m`` barycenter points
    (distinct rows)."""
    from .baselines import nearest_indices

    idx = nearest_indices(stats.features[k].numpy(), np.asarray(bary.positions[k])[:m])
    return [int(stats.rows[k][i]) for i in idx]


class Distiller:
    """Distils ``train_dataset`` through the frozen teacher ``model`` into ``images_per_class`` images per class.

    Args:
        model: the teacher: a :class:`Backbone`, a timm / transformers classifier, a name or a folder
            (see :func:`wmdd_hf.load_backbone`).
        args: :class:`DistillationArguments`.
        train_dataset: a ``datasets`` image-classification ``Dataset`` (or streaming ``IterableDataset``).
        eval_dataset: the real evaluation split, used by :meth:`evaluate`.
        callbacks: ``transformers.TrainerCallback`` objects (``on_train_begin``, ``on_step_end``, ``on_log``,
            ``on_train_end`` are called with ``(args, state, control)``).
        dataset_name: what ``train_dataset`` was loaded from (a Hub id or a local folder), for the card: a Hub id
            is linked, a local folder is named as local; without it the card names the dataset without a link.

    Everything that can be checked cheaply is checked here, before any work: columns, labels, class sizes, the
    teacher's norm layers, and (with ``push_to_hub``) the repo id and the token.

    To change the objective, override :meth:`synthesis_loss`; to change a stage, override its method.
    """

    def __init__(
        self,
        model: Backbone | torch.nn.Module | str,
        args: DistillationArguments | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | None = None,
        callbacks: list | None = None,
        dataset_name: str | None = None,
    ):
        from accelerate import Accelerator
        from transformers import TrainerControl

        self.args = args or DistillationArguments()
        if train_dataset is None:
            raise ValueError("train_dataset is required: a datasets image-classification dataset.")
        self.accelerator = Accelerator(log_with=self.args.trackers or None, project_dir=self.args.output_dir)
        self.teacher = load_backbone(model).freeze().to(self.accelerator.device)
        # a teacher named by Hub or timm id is found again by that id; one from a folder or memory travels with the set
        self._teacher_by_id = isinstance(model, (str, Path)) and "folder" not in self.teacher.metadata
        self.teacher.set_feature_pool(self.args.feature_pool)
        if self.args.channels_last:
            self.teacher = self.teacher.to(memory_format=torch.channels_last)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.dataset_name = dataset_name
        self.callbacks = list(callbacks or [])
        self.control = TrainerControl()
        self.state = DistillerState(
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process,
        )
        self.output_dir = Path(self.args.output_dir)
        self.metrics: dict = {}
        self.image_space = self._image_space()
        self.image_column, self.label_column = self._validate()
        self.class_names = list(train_dataset.features[self.label_column].names)
        self.num_classes = len(self.class_names)
        self.distilled: Dataset | None = None
        self._decoded: tuple[torch.Tensor, ...] | None = None  # this process's rows, read once by the statistics
        if self.args.push_to_hub:  # fail now, not after the whole distillation
            from .hub import check_hub_token, check_repo_id

            check_repo_id(self.args.hub_dataset_id)
            check_hub_token(self.args.hub_token)

    # ---------------------------------------------------------------------------------------------------------------
    # distill: the table of contents
    # ---------------------------------------------------------------------------------------------------------------
    def distill(self) -> Dataset:
        """Runs (or resumes) every stage and returns the distilled set (also written to ``output_dir/distilled``)."""
        self._begin()
        resumed = {
            s: (self.output_dir / f).exists()
            for s, f in (("statistics", "statistics.pt"), ("barycenter", "barycenters.pt"))
        }
        found = [f"{stage} found" for stage, there in resumed.items() if there]
        if found and self.accelerator.is_main_process:
            logger.info("Resuming %s: %s (loaded, not computed again).", self.output_dir, " and ".join(found))
        with self._stage("statistics"):
            stats = self.compute_statistics()
        with self._stage("barycenter"):
            bary = self.compute_barycenters(stats)
        with self._stage("synthesis"):
            synthetic = self.synthesize(stats, bary)
        resumed["synthesis_batches"] = self.state.skipped_batches
        if self.accelerator.is_main_process:
            with self._stage("soft_labels"):
                soft = self.label(synthetic)
            with self._stage("save"):
                self.distilled = self.save(synthetic, soft, stats, bary)
        self._end(resumed)
        return self.distilled

    # ---------------------------------------------------------------------------------------------------------------
    # 1. statistics
    # ---------------------------------------------------------------------------------------------------------------
    def compute_statistics(self) -> ClassStatistics:
        """One pass of the teacher over ``train_dataset``, data-parallel over rows: per-class norm-layer moments
        (merged exactly on every process) and per-class features, each class's sent to the process that owns it,
        capped at ``max_features_per_class`` and written there (one shard per class, :mod:`wmdd_hf.feature_store`)."""
        path = self.output_dir / "statistics.pt"
        if path.exists():
            self._decoded = None  # resumed: the decoded array is not needed
            return ClassStatistics.load(path)
        acc, a = self.accelerator, self.args
        views = a.synthesis_config().augment if a.research.statistics_view == "augmented" else None
        with self._statistics_batches() as (batches, total):
            stats = collect_class_statistics(
                self.teacher,
                batches,
                self.num_classes,
                total=total,
                max_features_per_class=a.max_features_per_class,
                seed=a.seed,
                progress=self._progress,
                views=views,
            )
        if acc.num_processes > 1:
            stats = send_features_to_owners(acc, stats).capped(a.max_features_per_class, a.seed)
        self._check_class_sizes(stats.counts)
        return self._store_statistics(stats, path)

    @contextlib.contextmanager
    def _statistics_batches(self):
        """``(batches, count or None)``: this process's share of ``(images, labels, rows)`` batches: the decoded
        array when it fits in memory, else decoded on the GPU (:mod:`wmdd_hf.device_decode`) or by a DataLoader, or a
        shard of a stream."""
        acc, a, ds, spec = self.accelerator, self.args, self.train_dataset, self.teacher.spec
        if not isinstance(ds, Dataset):
            from datasets.distributed import split_dataset_by_node

            shard = split_dataset_by_node(ds, rank=acc.process_index, world_size=acc.num_processes)
            yield iterate_batches(shard, spec, self.image_column, self.label_column, a.stats_batch_size), None
            return
        size = a.stats_batch_size
        with acc.split_between_processes(list(range(len(ds)))) as rows:
            total = (len(rows) + size - 1) // size
            if fits_in_memory(ds, spec):
                if self._decoded is None:  # a Distiller that skipped the decode-first check
                    self._decode_first()
                images, labels, idx = self._decoded
                assert idx.tolist() == list(rows), "the decoded share and the pass's share must be the same rows"
                # a generator: one batch copied at a time, not a second copy of the data
                yield (
                    ((images[s : s + size], labels[s : s + size], idx[s : s + size]) for s in range(0, len(idx), size)),
                    total,
                )
            elif decodes_on_device(ds, self.image_column, acc.device):  # nvJPEG: the GPU is fed without workers
                yield (
                    iterate_device_batches(ds, spec, self.image_column, self.label_column, size, acc.device, rows),
                    total,
                )
            else:
                yield (
                    iterate_batches(ds, spec, self.image_column, self.label_column, size, a.num_workers, indices=rows),
                    total,
                )
        self._decoded = None  # the pass is the only reader: free the array

    def _check_class_sizes(self, counts) -> None:
        m = self.args.images_per_class
        short = [f"{self.class_names[k]!r} ({int(counts[k])})" for k in range(self.num_classes) if counts[k] < m]
        if short:
            raise DatasetValidationError(
                f"Class(es) {', '.join(short)} had fewer than images_per_class = {m} examples in the statistics "
                "pass. Lower images_per_class, or filter the ClassLabel to the classes that have enough."
            )

    def _store_statistics(self, stats: ClassStatistics, path: Path) -> ClassStatistics:
        """Every process writes the shards of the classes it owns; then the main one writes ``statistics.pt``.
        Returns statistics whose features are read back from the shards, one class at a time."""
        acc, folder = self.accelerator, self.output_dir / FOLDER
        mine = owned_classes(self.num_classes, acc.num_processes, acc.process_index)
        for k in mine:
            write_class(folder, k, stats.features[k], stats.rows[k])
        held = sum(len(stats.rows[k]) for k in mine)
        ckpt.log_event(self.output_dir, stage="statistics_features", classes=mine, rows=held, process=acc.process_index)
        classes = list(range(self.num_classes))
        stored = ClassStatistics(
            ClassShards(folder, classes, "features"),
            ClassShards(folder, classes, "rows"),
            stats.norms,
            stats.counts,
            stats.layer_kinds,
            stats.inputs,
        )
        acc.wait_for_everyone()  # every shard is on disk before statistics.pt says the pass is done
        if acc.is_main_process:
            ckpt.atomic_save(stored.summary_state(), path)
            ckpt.log_event(self.output_dir, stage="statistics", process=acc.process_index)
        return stored

    # ---------------------------------------------------------------------------------------------------------------
    # 2. barycenters
    # ---------------------------------------------------------------------------------------------------------------
    def compute_barycenters(self, stats: ClassStatistics) -> Barycenters:
        """Per class, the W2 barycenter of its kept features with ``images_per_class`` points; each process solves
        the classes it owns, and every process receives all of them."""
        path = self.output_dir / "barycenters.pt"
        if path.exists():
            return Barycenters.from_state(ckpt.load(path))
        acc, a = self.accelerator, self.args
        state = {}
        for k in owned_classes(self.num_classes, acc.num_processes, acc.process_index):  # those whose shards it wrote
            r = wasserstein_barycenter(
                stats.features[k].numpy(),
                a.images_per_class,
                weights=a.research.barycenter_weights,
                iterations=a.research.barycenter_iterations,
                damping=a.research.barycenter_damping,
                solver=a.barycenter_solver,
                seed=class_seed(a.seed, k),
            )
            state[k] = {"positions": r.positions, "weights": r.weights, "costs": r.costs}
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            state = {k: v for part in gather_object([state]) for k, v in part.items()}
        bary = Barycenters.from_state(state)
        if acc.is_main_process:
            ckpt.atomic_save(state, path)
            ckpt.log_event(self.output_dir, stage="barycenters", process=acc.process_index)
            self.log({"w2_cost_mean": bary.w2_cost_mean})
        return bary

    # ---------------------------------------------------------------------------------------------------------------
    # 3. synthesis
    # ---------------------------------------------------------------------------------------------------------------
    def class_batches(self) -> list[list[int]]:
        """The classes optimised together, in order (identical whatever the number of processes)."""
        return class_batches(self.num_classes, self.args.classes_per_batch)

    def synthesize(self, stats: ClassStatistics, bary: Barycenters) -> SyntheticImages | None:
        """Optimises every class batch this process owns that is not on disk yet (each saved as soon as it is done),
        then returns all of them in class order on the main process (None on the others)."""
        from tqdm.auto import tqdm

        acc, a = self.accelerator, self.args
        if a.torch_compile:  # in place: module names, and so the norm-layer statistics' keys, stay the same
            self.teacher.model.compile(backend=a.torch_compile_backend)
        if a.research.pixel_basis == "data":  # the data's colour basis, from this pass's input moments
            self.image_space = self._data_basis(stats)
        wanted = a.research.bn_loss != "none" or a.research.input_weight > 0
        targets = NormTargets.from_moments(stats.norms, a.research.bn_loss, stats.inputs) if wanted else None
        batches = self.class_batches()
        self.state.max_steps = len(batches) * a.iterations
        with acc.split_between_processes(list(enumerate(batches))) as mine:
            bar = tqdm(total=len(mine) * a.iterations, desc="synthesis", unit="step", disable=not self._progress)
            for index, classes in mine:
                path = self._batch_path(index)
                if path.exists():
                    self.state.skipped_batches += 1
                    bar.update(a.iterations)
                    continue
                part = self.synthesize_batch(index, classes, stats, bary, targets, bar)
                ckpt.atomic_save(part, path)
                ckpt.log_event(
                    self.output_dir, stage="synthesis", batch=index, classes=classes, process=acc.process_index
                )
                self.state.synthesized_batches += 1
            bar.close()
        if self.state.skipped_batches:
            logger.info(
                "Resumed synthesis: %d of %d class batches were already done (%s).",
                self.state.skipped_batches,
                len(mine),
                self.output_dir / "synthetic",
            )
        acc.wait_for_everyone()
        return self._collect_synthetic() if acc.is_main_process else None

    def synthesize_batch(
        self, index: int, classes: list[int], stats: ClassStatistics, bary: Barycenters, targets, bar=None
    ) -> dict:
        """One class batch: ``{"classes", "images" (n, C, H, W) float in [0, 1], "labels" (n,), "history", "moved"
        (n,): each image's RMS pixel change from its start, in grey levels (0-255)}``."""
        a = self.args
        generator = torch.Generator().manual_seed(class_seed(a.seed, classes[0]))
        init = self.initial_images(classes, stats, bary, generator)
        labels = torch.tensor([k for k in classes for _ in range(a.images_per_class)])
        start_step = index * a.iterations
        self.state.global_step = start_step

        def on_step(it: int) -> None:
            if bar is not None:
                bar.update(1)
            self.state.global_step = start_step + it + 1
            self._callback("on_step_end")

        def on_log(it: int, record: dict) -> None:
            if bar is not None:
                bar.set_postfix(classes=f"{classes[0]}-{classes[-1]}", loss=f"{record['loss']:.4g}")
            self.log(record)

        images, history = synthesize_batch(  # precision is the config's (synthesis_precision), not Accelerate's
            self.teacher,
            init,
            labels,
            bary.points(classes),
            bary.point_weights(classes),
            targets,
            a.synthesis_config(),
            generator,
            on_log,
            on_step,
            loss_fn=self.synthesis_loss,
            space=self.image_space,
        )
        moved = (images.float().cpu() - init.float().cpu()).pow(2).mean(dim=(1, 2, 3)).sqrt() * 255  # RMS, grey levels
        return {
            "classes": classes,
            "images": images.float().cpu(),
            "labels": labels,
            "history": history,
            "moved": moved,
        }

    def synthesis_loss(self, terms: SynthesisTerms) -> torch.Tensor:
        """The loss of one synthesis step (a scalar to minimise), like ``Trainer.compute_loss``: by default
        ``feature_loss + bn_weight * bn_loss``. Override it to add a term, e.g.
        ``return super().synthesis_loss(terms) + 0.1 * total_variation(terms.pixels)``."""
        return default_loss(terms, self.args.bn_weight)

    def initial_images(
        self, classes: list[int], stats: ClassStatistics, bary: Barycenters, generator: torch.Generator
    ) -> torch.Tensor:
        """``(len(classes) * IPC, C, H, W)`` starting pixels in [0, 1]: real images nearest to the points (``real``),
        mosaics of the best real crops near each point (``patches``, :mod:`wmdd_hf.mosaic`), or noise."""
        a, spec, m = self.args, self.teacher.spec, self.args.images_per_class

        def real(rows) -> torch.Tensor:
            return (
                torch.stack([spec.to_uint8(self.train_dataset[int(r)][self.image_column]) for r in rows]).float() / 255
            )

        init = self.init_kind()
        if init == "patches":
            from .mosaic import mosaic, nearest_rows

            out = []
            for k in classes:
                for point in np.asarray(bary.positions[k])[:m]:
                    rows = nearest_rows(stats.features[k], stats.rows[k], point, a.research.patch_candidates)
                    out.append(mosaic(self.teacher, real(rows), k, grid=a.research.patch_grid, generator=generator))
            return torch.stack(out)
        if init == "real":
            return real([r for k in classes for r in nearest_real_rows(stats, bary, k, m)])
        shape = (len(classes) * m, spec.channels, *spec.size)
        if hasattr(self.image_space, "noise"):  # noise drawn in the data's colour basis (pixel_basis="data")
            return self.image_space.noise(shape, generator)
        mean = self.teacher.mean.cpu().view(1, -1, 1, 1)
        std = self.teacher.std.cpu().view(1, -1, 1, 1)
        noise = torch.randn(*shape, generator=generator)
        return (mean + std * noise).clamp(0, 1)

    def init_kind(self) -> str:
        """The start synthesis uses: ``args.init``, with ``"auto"`` resolved to ``"real"`` for a map-style dataset
        and ``"noise"`` for a stream (its rows cannot be read by index)."""
        if self.args.init != "auto":
            return self.args.init
        return "real" if isinstance(self.train_dataset, Dataset) else "noise"

    def _batch_path(self, index: int) -> Path:
        return self.output_dir / "synthetic" / f"batch_{index:05d}.pt"

    def _collect_synthetic(self) -> SyntheticImages:
        """Every batch file, in class order; pixels rounded to uint8."""
        images, labels, histories = [], [], []
        for index, _ in enumerate(self.class_batches()):
            part = ckpt.load(self._batch_path(index))
            images.append(part["images"])
            labels.append(part["labels"])
            histories.append({"classes": part["classes"], "history": part["history"], "moved": part.get("moved")})
        pixels = (torch.cat(images).clamp(0, 1) * 255).round().to(torch.uint8)
        return SyntheticImages(pixels, torch.cat(labels), histories)

    # ---------------------------------------------------------------------------------------------------------------
    # 4. soft labels
    # ---------------------------------------------------------------------------------------------------------------
    def label(self, synthetic: SyntheticImages) -> SoftLabels:
        """The teacher's logits and probabilities at ``temperature`` on every image and, with
        ``soft_label_epochs``, its logits on that many seeded augmented views of each."""
        path = self.output_dir / "soft_labels.pt"
        if path.exists():
            return SoftLabels.from_state(ckpt.load(path))
        a = self.args
        pixels = synthetic.images.float() / 255
        views = None
        if a.soft_label_epochs > 0:
            augment = a.synthesis_config().augment
            views = augmented_soft_labels(self.teacher, pixels, a.soft_label_epochs, augment, seed=a.seed)
        logits = teacher_logits(self.teacher, pixels)
        probs = torch.softmax(logits / a.temperature, dim=1).half().cpu()  # what soft_labels() returns
        soft = SoftLabels(probs, views, logits=logits.float().cpu())
        ckpt.atomic_save(soft.to_state(), path)
        return soft

    # ---------------------------------------------------------------------------------------------------------------
    # 5. save
    # ---------------------------------------------------------------------------------------------------------------
    def save(self, synthetic: SyntheticImages, soft: SoftLabels, stats: ClassStatistics, bary: Barycenters) -> Dataset:
        """The distilled set: ``metrics.json`` inputs, the pictures, and ``output_dir/distilled`` in Hub layout
        (a ``default`` config and, with stored views, a ``soft_labels`` config). Returns the default config."""
        from .hub import save_distilled
        from .visualization import save_barycenter_pca, save_image_grid

        dataset = build_dataset(synthetic, soft, bary, self.class_names)
        self.metrics = set_metrics(self.teacher, synthetic, soft, stats, bary)
        grid = self.output_dir / "synthetic_grid.png"
        if self.args.save_plots:
            save_image_grid(synthetic.images, synthetic.labels, self.class_names, grid)
            save_barycenter_pca(
                stats.features, bary.positions, bary.weights, self.class_names, self.output_dir / "barycenters_pca.png"
            )
        save_distilled(
            self.output_dir / "distilled",
            dataset,
            self.metadata(),
            views_dataset(soft),
            grid if grid.exists() else None,
            teacher=self._teacher_writer(),
        )
        return dataset

    def _teacher_writer(self):
        """How :meth:`save` bundles the teacher into ``distilled/teacher``: its folder's model files copied, or
        ``save_backbone`` for an in-memory timm or transformers model; None for a teacher named by a Hub or timm id
        (``wmdd_hf.json`` names it) and for a plain ``nn.Module`` (nothing could load it back)."""
        import shutil

        from .backbones import save_backbone

        folder = self.teacher.metadata.get("folder")
        if folder:
            keep = ("config.json", "wmdd_hf.json", "preprocessor_config.json", "*.safetensors")
            files = [f for pattern in keep for f in Path(folder).glob(pattern)]

            def copy(dest: Path) -> None:
                dest.mkdir(parents=True)
                for f in files:
                    shutil.copy2(f, dest / f.name)

            return copy
        if self._teacher_by_id or self.teacher.source == "module":
            return None
        return lambda dest: save_backbone(self.teacher, dest)

    def _source(self) -> dict:
        """``source_dataset`` (and ``source_url`` for a Hub dataset, ``source_local`` for a local folder)."""
        name = self.dataset_name or getattr(self.train_dataset.info, "dataset_name", None) or "unknown"
        if self.dataset_name is None:
            return {"source_dataset": name}
        if Path(self.dataset_name).expanduser().exists():
            return {"source_dataset": Path(self.dataset_name).name, "source_local": True}
        if self.dataset_name in ("fashion_mnist", "fashion-mnist", "fashion_mnist_rgb32"):  # the embedded copy
            return {
                "source_dataset": "fashion_mnist",
                "source_url": "https://huggingface.co/datasets/zalando-datasets/fashion_mnist",
            }
        return {"source_dataset": name, "source_url": f"https://huggingface.co/datasets/{name}"}

    def _matched_norm_layers(self) -> dict[str, int]:
        """How many norm layers of each kind the statistics term matches, by how they are matched."""
        from .backbones import norm_channel_dim, norm_kind

        if self.args.research.bn_loss == "none":
            return {}
        how = {
            ("batch", 1): "BatchNorm: mean and variance of each input channel, over images and pixels",
            ("group", 1): "GroupNorm: mean and variance of each input channel, over images and pixels",
            ("layer", 1): "LayerNorm (channels first): mean and variance of each channel, over images and pixels",
            ("layer", -1): "LayerNorm (tokens): mean and variance of each channel, over images and token positions",
        }
        counts: dict[str, int] = {}
        for _, module in self.teacher.norm_layers():
            key = how[(norm_kind(module), norm_channel_dim(module))]
            counts[key] = counts.get(key, 0) + 1
        return counts

    def metadata(self) -> dict:
        """What the card and ``wmdd_hf.json`` say about this run: arguments (no token), source, teacher, metrics."""
        from .backbones import read_metadata

        teacher_meta = getattr(self.teacher, "metadata", None) or {}
        info, name = self.train_dataset.info, type(self.teacher.model).__name__
        return {
            "arguments": {k: v for k, v in self.args.to_dict().items() if k != "hub_token"},
            **self._source(),
            "norm_layers": self._matched_norm_layers(),
            "license": getattr(info, "license", None) or "other",
            "source_split": str(getattr(self.train_dataset, "split", "train") or "train"),
            "num_images": self.metrics.get("num_images"),
            "num_classes": self.num_classes,
            "image_size": [self.teacher.spec.channels, *self.teacher.spec.size],
            "class_names": self.class_names,
            "teacher": {
                "id": teacher_meta.get("id", name),
                "architecture": teacher_meta.get("architecture", name),
                "test_acc": teacher_meta.get("test_acc"),
                "fingerprint": ckpt.fingerprint_module(self.teacher),
            },
            "metrics": self.metrics,
            "repo_id": self.args.hub_dataset_id,
            **({"teacher_folder_metadata": read_metadata(teacher_meta["folder"])} if "folder" in teacher_meta else {}),
        }

    # ---------------------------------------------------------------------------------------------------------------
    # After distill: copy, push, evaluate
    # ---------------------------------------------------------------------------------------------------------------
    def save_distilled(self, path: str | Path) -> Path:
        """Copies the distilled set (Hub layout) to ``path``; ``datasets.load_dataset(path)`` reads it back."""
        from .hub import copy_distilled

        source = self.output_dir / "distilled"
        if not source.exists():
            raise RuntimeError("Nothing distilled yet: call distill() first.")
        return copy_distilled(source, Path(path), protected=(self.output_dir,))

    def push_to_hub(
        self,
        repo_id: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
    ) -> str | None:
        """Pushes ``output_dir/distilled`` to the Hub dataset repo (main process only; others return None)."""
        from .hub import check_repo_id, push_distilled, update_distilled_metadata

        repo_id = check_repo_id(repo_id or self.args.hub_dataset_id)
        if not self.accelerator.is_main_process:
            return None
        folder = self.output_dir / "distilled"
        if (folder / "README.md").exists():  # the card names the repo it lives in
            update_distilled_metadata(folder, repo_id=repo_id)
        return push_distilled(
            folder,
            repo_id,
            private=self.args.hub_private_repo if private is None else private,
            token=token or self.args.hub_token,
            commit_message=commit_message,
        )

    def evaluate(self, **kwargs) -> dict:
        """Trains students on the distilled set and reports accuracy on ``eval_dataset`` (see
        :func:`wmdd_hf.evaluation.evaluate_distilled` for the keyword arguments)."""
        from .evaluation import evaluate_distilled

        if self.eval_dataset is None:
            raise ValueError("evaluate() needs eval_dataset= (the real test split).")
        if self.distilled is None:
            raise RuntimeError("Nothing distilled yet: call distill() first.")
        kwargs.setdefault("device", self.accelerator.device)
        result = evaluate_distilled(self.distilled, self.eval_dataset, teacher=self.teacher, **kwargs)
        if self.accelerator.is_main_process:
            from .hub import add_evaluation

            add_evaluation(self.output_dir / "distilled", result)
        return result

    # ---------------------------------------------------------------------------------------------------------------
    # Callbacks and logging: every callback is called from _callback
    # ---------------------------------------------------------------------------------------------------------------
    def _callback(self, event: str, **kwargs) -> None:
        for cb in self.callbacks:
            handler = getattr(cb, event, None)
            if handler is not None:
                result = handler(self.args, self.state, self.control, **kwargs)
                if result is not None:
                    self.control = result

    def log(self, logs: dict) -> None:
        """Records ``logs`` in ``state.log_history``, sends its numbers to the trackers and calls ``on_log``."""
        record = {**logs, "stage": self.state.stage, "step": self.state.global_step}
        self.state.log_history.append(record)
        numeric = {f"{self.state.stage}/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
        if self.args.trackers:
            self.accelerator.log(numeric, step=self.state.global_step)
        self._callback("on_log", logs=record)

    # ---------------------------------------------------------------------------------------------------------------
    # Plumbing: checks, the run folder, stage timing
    # ---------------------------------------------------------------------------------------------------------------
    @property
    def _progress(self) -> bool:
        return self.accelerator.is_main_process and not self.args.disable_tqdm

    def _data_basis(self, stats: ClassStatistics):
        from .generators import DataBasisSpace

        if stats.inputs is None:
            raise ValueError(
                "pixel_basis='data' needs the pass's input statistics, which this run's statistics.pt lacks (saved "
                "before they were collected): rerun with --overwrite_output_dir True, or into a new --output_dir."
            )
        return DataBasisSpace.from_moments(stats.inputs, self.teacher.spec.channels)

    def _image_space(self):
        """Pixels, or the latents of ``args.generator`` (checked against the teacher's input now)."""
        from .generators import LatentSpace, PixelSpace, check_generator

        if self.args.generator is None:
            return PixelSpace()
        space = LatentSpace.from_pretrained(self.args.generator).to(self.accelerator.device)
        check_generator(space, self.teacher.spec.channels, self.teacher.spec.size)
        return space

    def _validate(self) -> tuple[str, str]:
        a = self.args
        if a.init in ("real", "patches") and not isinstance(self.train_dataset, Dataset):
            raise DatasetValidationError(
                f"init={a.init!r} needs a map-style Dataset (rows are read by index); use init='noise'."
            )
        columns = validate_dataset(
            self.train_dataset,
            a.image_column,
            a.label_column,
            num_classes=self.teacher.num_classes,
            min_per_class=a.images_per_class,  # a barycenter point per image needs as many real images
            channels=self.teacher.spec.channels,
        )
        order = teacher_class_order(
            class_names(self.train_dataset, columns[1]), self.teacher.class_names, a.class_mapping
        )
        if order is not None:  # on a copy: the caller's model keeps its head
            self.teacher = copy.deepcopy(self.teacher).reorder_classes(order)
        if a.research.bn_loss != "none" and not self.teacher.norm_layers():
            raise ValueError(
                f"bn_loss={a.research.bn_loss!r} needs normalisation layers, but the teacher ({type(self.teacher.model).__name__}) "
                "has no BatchNorm, LayerNorm or GroupNorm: use bn_loss='none'."
            )
        return columns

    def _run_config(self) -> dict:
        ds = self.train_dataset
        return {
            **self.args.result_arguments(),
            "teacher_fingerprint": ckpt.fingerprint_module(self.teacher),
            # a stream has no fingerprint that changes with its data: None, and such runs are not resumed
            "dataset_fingerprint": getattr(ds, "_fingerprint", None) if isinstance(ds, Dataset) else None,
            "num_classes": self.num_classes,
            **self._generator_fingerprint(),
        }

    def _generator_fingerprint(self) -> dict:
        """With a generator, its weights' fingerprint (a resume refuses another autoencoder); nothing without one,
        so a pixel run's run_config.json is as before."""
        space = self.image_space
        return (
            {"generator_fingerprint": ckpt.fingerprint_module(space.autoencoder)}
            if hasattr(space, "autoencoder")
            else {}
        )

    def _begin(self) -> None:
        a = self.args
        self._prepare_output_dir()
        if a.trackers:
            self.accelerator.init_trackers(
                a.run_name or "wmdd",
                config={k: v for k, v in a.to_dict().items() if isinstance(v, (int, float, str, bool))},
            )
        self.state.stage_seconds = {}
        self._callback("on_train_begin")

    def _end(self, resumed: dict) -> None:
        acc = self.accelerator
        self.metrics.update(self.state.stage_seconds, resumed=resumed)
        if acc.is_main_process:
            self.log({k: v for k, v in self.metrics.items() if isinstance(v, (int, float))})
            ckpt.atomic_write_text(json.dumps(self.metrics, indent=2), self.output_dir / "metrics.json")
        if self.args.push_to_hub:
            self.push_to_hub()
        acc.wait_for_everyone()
        self._callback("on_train_end")
        if self.args.trackers:
            acc.end_training()

    @contextlib.contextmanager
    def _stage(self, name: str):
        """Sets ``state.stage`` and records the stage's wall seconds in ``state.stage_seconds[f"{name}_s"]``."""
        self.state.stage = name
        start = time.time()
        if self.accelerator.is_main_process:
            logger.info("%s: started", name)
        yield
        self.state.stage_seconds[f"{name}_s"] = round(time.time() - start, 2)
        if self.accelerator.is_main_process:
            logger.info("%s: done in %.1f s", name, self.state.stage_seconds[f"{name}_s"])

    def _prepare_output_dir(self) -> None:
        """Resume check (refuses a different run), the decode pass, then a fresh ``run_config.json``."""
        acc, a = self.accelerator, self.args
        config = self._run_config()
        defaults = {**DistillationArguments(output_dir=a.output_dir).result_arguments(), **BEFORE_THE_ARGUMENT}
        resuming = ckpt.check_run_config(self.output_dir, config, a.overwrite_output_dir, defaults)
        if resuming and config["dataset_fingerprint"] is None:
            raise ckpt.OutputDirError(
                f"{self.output_dir} holds a run on a streaming dataset, and a stream has no fingerprint that changes "
                "with its data: resuming could mix statistics of another stream. Use overwrite_output_dir=True or a "
                "new output_dir."
            )
        self._decode_first()
        acc.wait_for_everyone()
        if acc.is_main_process:
            if not resuming and self.output_dir.exists() and a.overwrite_output_dir:
                ckpt.remove_run_files(self.output_dir)
            if self.output_dir.exists():
                ckpt.remove_stale_temporaries(self.output_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_text(json.dumps(config, indent=2), self.output_dir / "run_config.json")
        acc.wait_for_everyone()

    def _decode_first(self) -> None:
        """Reads every image of a map-style dataset that fits in memory (cached; the statistics pass reuses it), so
        a corrupt image is reported with its row before any stage starts."""
        ds, spec = self.train_dataset, self.teacher.spec
        if isinstance(ds, Dataset) and fits_in_memory(ds, spec):
            with self.accelerator.main_process_first():
                images, labels = decode_all(
                    ds, spec, self.image_column, self.label_column, self.args.num_workers, self._progress
                )
            self._decoded = own_share(self.accelerator, images, labels)
