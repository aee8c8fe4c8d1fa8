"""The ``Distiller``: runs the WMDD stages in order, like ``transformers.Trainer`` runs training.

    distiller = Distiller(model=teacher, args=DistillationArguments(...), train_dataset=train, eval_dataset=test)
    distilled = distiller.distill()          # datasets.Dataset: image, label, soft_label, barycenter_weight
    distiller.push_to_hub()

Stages (each a plain function in its own module; this class only orders them, distributes them with Accelerate and
checkpoints their results in ``output_dir``):

1. statistics  (data-parallel over rows; moments merged exactly, features gathered)
2. barycenters (sharded by class)
3. synthesis   (sharded by class batch; every finished batch is saved at once)
4. soft labels (main process)
5. the distilled set in Hub layout, the pictures, and optionally the push.

A rerun with the same ``output_dir`` and arguments skips what is finished; different arguments are refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, IterableDataset, Sequence, Value

from . import checkpoint as ckpt
from .arguments import DistillationArguments
from .backbones import Backbone, load_backbone
from .barycenter import wasserstein_barycenter
from .data import (
    DatasetValidationError,
    decode_all,
    fits_in_memory,
    iterate_batches,
    uint8_to_png_images,
    validate_dataset,
)
from .soft_labels import ViewLabels, augmented_soft_labels, soft_labels, storage_bytes
from .statistics import ClassStatistics, collect_class_statistics
from .synthesis import NormTargets, synthesize_batch

logger = logging.getLogger(__name__)


def class_seed(seed: int, class_id: int) -> int:
    """The seed of one class (or of the batch that starts with it): independent of the number of processes."""
    return (seed * 1_000_003 + class_id * 7_919) % (2**31 - 1)


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
    """

    def __init__(
        self,
        model: Backbone | torch.nn.Module | str,
        args: DistillationArguments | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | None = None,
        callbacks: list | None = None,
    ):
        from accelerate import Accelerator
        from transformers import TrainerControl

        self.args = args or DistillationArguments()
        if train_dataset is None:
            raise ValueError("train_dataset is required: a datasets image-classification dataset.")
        self.accelerator = Accelerator(log_with=self.args.trackers or None, project_dir=self.args.output_dir)
        self.teacher = load_backbone(model).freeze().to(self.accelerator.device)
        self.train_dataset, self.eval_dataset = train_dataset, eval_dataset
        self.callbacks = list(callbacks or [])
        self.control = TrainerControl()
        self.state = DistillerState(
            is_local_process_zero=self.accelerator.is_local_main_process,
            is_world_process_zero=self.accelerator.is_main_process,
        )
        self.output_dir = Path(self.args.output_dir)
        self.metrics: dict = {}
        self.image_column, self.label_column = self._validate()
        self.class_names = list(train_dataset.features[self.label_column].names)
        self.num_classes = len(self.class_names)
        self.distilled: Dataset | None = None
        if self.args.push_to_hub:  # fail now, not after the whole distillation
            from .hub import check_hub_token, check_repo_id

            check_repo_id(self.args.hub_dataset_id)
            check_hub_token(self.args.hub_token)

    # ---------------------------------------------------------------------------------------------------------------
    # Validation: everything that can be checked before expensive work
    # ---------------------------------------------------------------------------------------------------------------
    def _validate(self) -> tuple[str, str]:
        a = self.args
        min_per_class = a.images_per_class  # a barycenter point per image needs as many real images
        if a.init == "real" and not isinstance(self.train_dataset, Dataset):
            raise DatasetValidationError(
                "init='real' needs a map-style Dataset (rows are read by index); use init='noise'."
            )
        columns = validate_dataset(
            self.train_dataset,
            a.image_column,
            a.label_column,
            num_classes=self.teacher.num_classes,
            min_per_class=min_per_class,
        )
        if a.bn_loss != "none" and not self.teacher.norm_layers():
            raise ValueError(
                f"bn_loss={a.bn_loss!r} needs normalisation layers, but the teacher ({type(self.teacher.model).__name__}) "
                "has no BatchNorm, LayerNorm or GroupNorm: use bn_loss='none'."
            )
        return columns

    def _run_config(self) -> dict:
        return {
            **self.args.result_arguments(),
            "teacher_fingerprint": ckpt.fingerprint_module(self.teacher),
            "dataset_fingerprint": dataset_fingerprint(self.train_dataset),
            "num_classes": self.num_classes,
        }

    def _preflight(self) -> None:
        """Reads every image of a map-style dataset that fits in memory before any stage starts (the decoded array is
        cached and the statistics pass reuses it), so a corrupt image is reported with its row before any work."""
        ds = self.train_dataset
        if isinstance(ds, Dataset) and fits_in_memory(ds, self.teacher.spec):
            with self.accelerator.main_process_first():
                decode_all(
                    ds,
                    self.teacher.spec,
                    self.image_column,
                    self.label_column,
                    self.args.num_workers,
                    self.accelerator.is_main_process and not self.args.disable_tqdm,
                )

    # ---------------------------------------------------------------------------------------------------------------
    # Logging and callbacks
    # ---------------------------------------------------------------------------------------------------------------
    def _callback(self, event: str, **kwargs) -> None:
        for cb in self.callbacks:
            handler = getattr(cb, event, None)
            if handler is not None:
                result = handler(self.args, self.state, self.control, **kwargs)
                if result is not None:
                    self.control = result

    def log(self, logs: dict) -> None:
        record = {**logs, "stage": self.state.stage, "step": self.state.global_step}
        self.state.log_history.append(record)
        numeric = {f"{self.state.stage}/{k}": v for k, v in logs.items() if isinstance(v, (int, float))}
        if self.args.trackers:
            self.accelerator.log(numeric, step=self.state.global_step)
        self._callback("on_log", logs=record)

    # ---------------------------------------------------------------------------------------------------------------
    # The stages
    # ---------------------------------------------------------------------------------------------------------------
    def _statistics(self) -> ClassStatistics:
        path = self.output_dir / "statistics.pt"
        if path.exists():
            return ClassStatistics.from_state(ckpt.load(path))
        acc, a, spec = self.accelerator, self.args, self.teacher.spec
        ds = self.train_dataset
        progress = acc.is_main_process and not a.disable_tqdm
        if isinstance(ds, Dataset):
            with acc.split_between_processes(list(range(len(ds)))) as rows:
                if fits_in_memory(ds, spec):
                    with acc.main_process_first():
                        images, labels = decode_all(
                            ds, spec, self.image_column, self.label_column, a.num_workers, progress
                        )
                    idx = torch.tensor(rows, dtype=torch.long)
                    batches = [
                        (
                            images[idx[s : s + a.stats_batch_size]],
                            labels[idx[s : s + a.stats_batch_size]],
                            idx[s : s + a.stats_batch_size],
                        )
                        for s in range(0, len(idx), a.stats_batch_size)
                    ]
                else:
                    batches = iterate_batches(
                        ds, spec, self.image_column, self.label_column, a.stats_batch_size, a.num_workers, indices=rows
                    )
                total = (len(rows) + a.stats_batch_size - 1) // a.stats_batch_size
                stats = collect_class_statistics(
                    self.teacher,
                    batches,
                    self.num_classes,
                    max_features_per_class=a.max_features_per_class,
                    seed=a.seed,
                    progress=progress,
                    total=total,
                )
        else:
            from datasets.distributed import split_dataset_by_node

            shard = split_dataset_by_node(ds, rank=acc.process_index, world_size=acc.num_processes)
            batches = iterate_batches(shard, spec, self.image_column, self.label_column, a.stats_batch_size)
            stats = collect_class_statistics(
                self.teacher,
                batches,
                self.num_classes,
                max_features_per_class=a.max_features_per_class,
                seed=a.seed,
                progress=progress,
            )
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            parts = gather_object([stats.to_state()])
            stats = ClassStatistics.from_state(parts[0])
            for part in parts[1:]:
                stats = stats.merge(ClassStatistics.from_state(part))
            stats = stats.capped(a.max_features_per_class, a.seed)
        empty = [self.class_names[k] for k in range(self.num_classes) if stats.counts[k] == 0]
        if empty:
            raise DatasetValidationError(f"Class(es) {empty} had no examples in the statistics pass.")
        if acc.is_main_process:
            ckpt.atomic_save(stats.to_state(), path)
            ckpt.log_event(self.output_dir, stage="statistics", process=acc.process_index)
        return stats

    def _barycenters(self, stats: ClassStatistics) -> dict[int, dict]:
        path = self.output_dir / "barycenters.pt"
        if path.exists():
            return ckpt.load(path)
        acc, a = self.accelerator, self.args
        result = {}
        with acc.split_between_processes(list(range(self.num_classes))) as mine:
            for k in mine:
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
            ckpt.log_event(self.output_dir, stage="barycenters", process=acc.process_index)
            costs = [result[k]["costs"][-1] for k in sorted(result)]
            self.log({"w2_cost_mean": float(np.mean(costs))})
        return result

    def class_batches(self) -> list[list[int]]:
        """The classes optimised together, in order (identical whatever the number of processes)."""
        per = self.args.classes_per_batch
        return [list(range(s, min(s + per, self.num_classes))) for s in range(0, self.num_classes, per)]

    def _initial_images(
        self, classes: list[int], stats: ClassStatistics, bary: dict, generator: torch.Generator
    ) -> torch.Tensor:
        m, spec = self.args.images_per_class, self.teacher.spec
        if self.args.init == "real":
            rows = [r for k in classes for r in nearest_real_rows(stats, bary, k, m)]
            images = torch.stack([spec.to_uint8(self.train_dataset[int(r)][self.image_column]) for r in rows])
            return images.float() / 255
        mean = self.teacher.mean.cpu().view(1, -1, 1, 1)
        std = self.teacher.std.cpu().view(1, -1, 1, 1)
        noise = torch.randn(len(classes) * m, spec.channels, *spec.size, generator=generator)
        return (mean + std * noise).clamp(0, 1)

    def _synthesize(self, stats: ClassStatistics, bary: dict) -> None:
        acc, a = self.accelerator, self.args
        config = a.synthesis_config()
        targets = NormTargets.from_moments(stats.norms, a.bn_loss) if a.bn_loss != "none" else None
        folder = self.output_dir / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        batches = list(enumerate(self.class_batches()))
        self.state.max_steps = len(batches) * a.iterations
        from tqdm.auto import tqdm

        with acc.split_between_processes(batches) as mine:
            bar = tqdm(
                total=len(mine) * a.iterations,
                desc="synthesis",
                unit="step",
                disable=not acc.is_main_process or a.disable_tqdm,
            )
            for index, classes in mine:
                path = folder / f"batch_{index:05d}.pt"
                if path.exists():
                    self.state.skipped_batches += 1
                    bar.update(a.iterations)
                    continue
                generator = torch.Generator().manual_seed(class_seed(a.seed, classes[0]))
                init = self._initial_images(classes, stats, bary, generator)
                labels = torch.tensor([k for k in classes for _ in range(a.images_per_class)])
                points = torch.cat([torch.from_numpy(bary[k]["positions"]) for k in classes])
                weights = torch.cat(
                    [torch.from_numpy(np.asarray(bary[k]["weights"], dtype=np.float32)) for k in classes]
                )
                start_step = index * a.iterations

                def on_step(it, start_step=start_step):
                    self.state.global_step = start_step + it + 1
                    bar.update(1)
                    self._callback("on_step_end")

                def on_log(it, record, classes=classes):
                    bar.set_postfix(classes=f"{classes[0]}-{classes[-1]}", loss=f"{record['loss']:.4g}")
                    self.log(record)

                self.state.global_step = start_step

                with acc.autocast():
                    images, history = synthesize_batch(
                        self.teacher, init, labels, points, weights, targets, config, generator, on_log, on_step
                    )
                ckpt.atomic_save(
                    {"classes": classes, "images": images.float().cpu(), "labels": labels, "history": history}, path
                )
                ckpt.log_event(
                    self.output_dir, stage="synthesis", batch=index, classes=classes, process=acc.process_index
                )
                self.state.synthesized_batches += 1
            bar.close()
        acc.wait_for_everyone()

    def _collect_synthetic(self) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        images, labels, histories = [], [], []
        for index, _ in enumerate(self.class_batches()):
            part = ckpt.load(self.output_dir / "synthetic" / f"batch_{index:05d}.pt")
            images.append(part["images"])
            labels.append(part["labels"])
            histories.append({"classes": part["classes"], "history": part["history"]})
        return torch.cat(images), torch.cat(labels), histories

    def _soft_labels(self, images_uint8: torch.Tensor) -> dict:
        path = self.output_dir / "soft_labels.pt"
        if path.exists():
            return ckpt.load(path)
        a = self.args
        pixels = images_uint8.float() / 255
        result = {"probs": soft_labels(self.teacher, pixels, a.temperature)}
        if a.soft_label_epochs > 0:
            views = augmented_soft_labels(
                self.teacher, pixels, a.soft_label_epochs, a.synthesis_config().augment, seed=a.seed
            )
            result.update(views=views.views, partners=views.partners, boxes=views.boxes, logits=views.logits)
        result["bytes"] = storage_bytes(*[v for v in result.values() if isinstance(v, torch.Tensor)])
        ckpt.atomic_save(result, path)
        return result

    # ---------------------------------------------------------------------------------------------------------------
    # Public API
    # ---------------------------------------------------------------------------------------------------------------
    def distill(self) -> Dataset:
        """Runs (or resumes) every stage and returns the distilled set (also written to ``output_dir/distilled``)."""
        acc, a = self.accelerator, self.args
        config = self._run_config()
        resuming = ckpt.check_run_config(self.output_dir, config, a.overwrite_output_dir)
        if resuming and config["dataset_fingerprint"] is None:
            raise ckpt.OutputDirError(
                f"{self.output_dir} holds a run on a streaming dataset, and a stream has no fingerprint that changes "
                "with its data: resuming could mix statistics of another stream. Use overwrite_output_dir=True or a "
                "new output_dir."
            )
        self._preflight()
        acc.wait_for_everyone()
        if acc.is_main_process:
            if not resuming and self.output_dir.exists() and a.overwrite_output_dir:
                ckpt.remove_run_files(self.output_dir)
            if self.output_dir.exists():
                ckpt.remove_stale_temporaries(self.output_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_text(json.dumps(config, indent=2), self.output_dir / "run_config.json")
        acc.wait_for_everyone()
        if a.trackers:
            acc.init_trackers(
                a.run_name or "wmdd",
                config={k: v for k, v in a.to_dict().items() if isinstance(v, (int, float, str, bool))},
            )
        self._callback("on_train_begin")
        timings = {}

        def timed(stage, fn, *args):
            self.state.stage = stage
            start = time.time()
            out = fn(*args)
            timings[f"{stage}_s"] = round(time.time() - start, 2)
            return out

        stats = timed("statistics", self._statistics)
        bary = timed("barycenter", self._barycenters, stats)
        timed("synthesis", self._synthesize, stats, bary)
        self.state.stage = "soft_labels"
        start = time.time()
        dataset = None
        if acc.is_main_process:
            images, labels, histories = self._collect_synthetic()
            images_uint8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)
            soft = self._soft_labels(images_uint8)
            timings["soft_labels_s"] = round(time.time() - start, 2)
            self.state.stage = "save"
            start = time.time()
            dataset = self._build_dataset(images_uint8, labels, soft, bary)
            self.metrics = self._final_metrics(images_uint8, labels, soft, bary, histories)
            self.metrics["point_distances"] = point_distances(self.teacher, images_uint8, labels, stats, bary)
            reached = [
                d["synthetic_to_own_point"] < d["real_median_to_nearest_point"]
                for d in self.metrics["point_distances"].values()
            ]
            self.metrics["classes_closer_than_median_real"] = int(sum(reached))
            self._save(dataset, soft, images_uint8, labels, stats, bary)
            timings["save_s"] = round(time.time() - start, 2)
        self.state.stage_seconds = timings
        self.metrics.update(timings)
        if acc.is_main_process:
            self.log({k: v for k, v in self.metrics.items() if isinstance(v, (int, float))})
            ckpt.atomic_write_text(json.dumps(self.metrics, indent=2), self.output_dir / "metrics.json")
        self.distilled = dataset
        if a.push_to_hub:
            self.push_to_hub()
        acc.wait_for_everyone()
        self._callback("on_train_end")
        if a.trackers:
            acc.end_training()
        return dataset

    def _build_dataset(self, images_uint8: torch.Tensor, labels: torch.Tensor, soft: dict, bary: dict) -> Dataset:
        features = Features(
            {
                "image": Image(),
                "label": ClassLabel(names=self.class_names),
                "soft_label": Sequence(Value("float32")),
                "barycenter_weight": Value("float32"),
            }
        )
        weights = np.concatenate([np.asarray(bary[k]["weights"], dtype=np.float32) for k in range(self.num_classes)])
        return Dataset.from_dict(
            {
                "image": uint8_to_png_images(images_uint8),
                "label": labels.tolist(),
                "soft_label": soft["probs"].float().numpy().tolist(),
                "barycenter_weight": weights.tolist(),
            },
            features=features,
        )

    def _views_dataset(self, soft: dict) -> Dataset | None:
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

    def _final_metrics(self, images_uint8, labels, soft, bary, histories) -> dict:
        first = [h["history"][0] for h in histories]
        last = [h["history"][-1] for h in histories]
        teacher_pred = soft["probs"].float().argmax(1)
        return {
            "num_images": len(images_uint8),
            "feature_loss_start": float(sum(r["feature_loss"] for r in first)),
            "feature_loss_end": float(sum(r["feature_loss"] for r in last)),
            "bn_loss_start": float(sum(r["bn_loss"] for r in first)),
            "bn_loss_end": float(sum(r["bn_loss"] for r in last)),
            "teacher_agreement": float((teacher_pred == labels).float().mean()),
            "w2_cost_mean": float(np.mean([bary[k]["costs"][-1] for k in bary])),
            "soft_label_bytes": int(soft["bytes"]),
        }

    def metadata(self) -> dict:
        """What the card and ``wmdd_hf.json`` say about this run."""
        from .backbones import read_metadata

        teacher_meta = getattr(self.teacher, "metadata", None) or {}
        return {
            "arguments": {k: v for k, v in self.args.to_dict().items() if k != "hub_token"},
            "source_dataset": getattr(self.train_dataset.info, "dataset_name", None) or "unknown",
            "license": getattr(self.train_dataset.info, "license", None) or "other",
            "source_split": str(getattr(self.train_dataset, "split", "train") or "train"),
            "num_images": self.metrics.get("num_images"),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "teacher": {
                "id": teacher_meta.get("id", type(self.teacher.model).__name__),
                "architecture": teacher_meta.get("architecture", type(self.teacher.model).__name__),
                "test_acc": teacher_meta.get("test_acc"),
                "fingerprint": ckpt.fingerprint_module(self.teacher),
            },
            "metrics": self.metrics,
            "repo_id": self.args.hub_dataset_id,
            **({"teacher_folder_metadata": read_metadata(teacher_meta["folder"])} if "folder" in teacher_meta else {}),
        }

    def _save(self, dataset, soft, images_uint8, labels, stats, bary) -> None:
        from .hub import save_distilled
        from .visualization import save_barycenter_pca, save_image_grid

        grid = self.output_dir / "synthetic_grid.png"
        if self.args.save_plots:
            save_image_grid(images_uint8, labels, self.class_names, grid)
            save_barycenter_pca(
                stats.features,
                {k: v["positions"] for k, v in bary.items()},
                {k: v["weights"] for k, v in bary.items()},
                self.class_names,
                self.output_dir / "barycenters_pca.png",
            )
        save_distilled(
            self.output_dir / "distilled",
            dataset,
            self.metadata(),
            self._views_dataset(soft),
            grid if grid.exists() else None,
        )

    def save_distilled(self, path: str | Path) -> Path:
        """Copies the distilled set (Hub layout) to ``path``; ``datasets.load_dataset(path)`` reads it back."""
        import shutil

        from .hub import check_replaceable

        source = self.output_dir / "distilled"
        if not source.exists():
            raise RuntimeError("Nothing distilled yet: call distill() first.")
        path = Path(path)
        if path.resolve() != source.resolve():
            check_replaceable(path, protected=(self.output_dir,))
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            shutil.copytree(source, tmp)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        return path

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
            self._add_evaluation_to_card(result)
        return result

    def _add_evaluation_to_card(self, result: dict) -> None:
        """Writes the evaluation into the distilled folder's ``wmdd_hf.json`` and its card."""
        from .hub import update_distilled_metadata

        p = result["protocol"]
        table = (
            "| protocol | student | top-1 % (mean ± std) | seeds |\n|---|---|---|---|\n"
            f"| {p['protocol']} | {p['student']} {p['student_kwargs']} | {100 * result['acc_mean']:.2f} ± "
            f"{100 * result['acc_std']:.2f} | {result['seeds']} |"
        )
        update_distilled_metadata(
            self.output_dir / "distilled",
            evaluation={k: v for k, v in result.items() if k != "curves"},
            evaluation_markdown=table
            + f"\n\nStudents tested on the real evaluation split; protocol: `{json.dumps(p)}`.",
        )


@torch.no_grad()
def point_distances(teacher: Backbone, images_uint8: torch.Tensor, labels: torch.Tensor, stats, bary: dict) -> dict:
    """Per class: how close the synthetic images got to their barycenter points, against how close real images are.

    ``synthetic_to_own_point``: mean Euclidean distance between the teacher feature of each synthetic image
    (un-augmented, as stored: uint8 pixels) and its own point. ``real_median_to_nearest_point``: median over the
    class's kept real features of the distance to the nearest point. Feature units (the teacher's penultimate layer).
    """
    device = next(teacher.parameters()).device
    teacher.eval()
    feats = torch.cat(
        [
            teacher(images_uint8[s : s + 500].to(device).float() / 255)[1].float().cpu()
            for s in range(0, len(labels), 500)
        ]
    )
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


def dataset_fingerprint(dataset) -> str | None:
    """What identifies the data of a run: the Arrow fingerprint of a map-style dataset. A stream has none (its
    name does not change when its files do): None, and such runs are not resumed."""
    return getattr(dataset, "_fingerprint", None) if isinstance(dataset, Dataset) else None


def nearest_real_rows(stats: ClassStatistics, bary: dict, k: int, m: int) -> list[int]:
    """Dataset rows of the real images whose features are nearest to class k's barycenter points (distinct rows)."""
    from .baselines import nearest_indices

    idx = nearest_indices(stats.features[k].numpy(), np.asarray(bary[k]["positions"])[:m])
    return [int(stats.rows[k][i]) for i in idx]
