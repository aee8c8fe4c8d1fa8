"""The ``Distiller``: runs the WMDD stages in order, like ``transformers.Trainer`` runs training.

    distiller = Distiller(model=teacher, args=DistillationArguments(...), train_dataset=train, eval_dataset=test)
    distilled = distiller.distill()          # datasets.Dataset: image, label, soft_label, barycenter_weight
    distiller.evaluate()                     # students trained on it, tested on eval_dataset
    distiller.push_to_hub()

This class is the face: arguments, state, callbacks and the public methods. The stages themselves (distribution
with Accelerate, checkpoints, resume) are functions in :mod:`wmdd_hf.pipeline`: statistics, barycenters, synthesis,
soft labels, save. A rerun with the same ``output_dir`` and arguments skips what is finished; different arguments are
refused (see the README's "Resuming").
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from datasets import Dataset, IterableDataset

from . import checkpoint as ckpt
from . import pipeline
from .arguments import BEFORE_THE_ARGUMENT, DistillationArguments
from .backbones import Backbone, load_backbone
from .data import DatasetValidationError, class_names, teacher_class_order, validate_dataset
from .pipeline import class_seed, dataset_fingerprint, nearest_real_rows, point_distances
from .statistics import ClassStatistics

logger = logging.getLogger(__name__)

__all__ = ["Distiller", "DistillerState", "class_seed", "nearest_real_rows", "point_distances"]


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

    Everything that can be checked cheaply is checked here, before any work: columns, labels, class sizes, the
    teacher's norm layers, and (with ``push_to_hub``) the repo id and the token.
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
        self.teacher.set_feature_pool(self.args.feature_pool)
        if self.args.channels_last:
            self.teacher = self.teacher.to(memory_format=torch.channels_last)
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
        self.run = pipeline.Run(
            self.accelerator,
            self.args,
            self.teacher,
            train_dataset,
            self.image_column,
            self.label_column,
            self.class_names,
            log=self.log,
        )
        if self.args.push_to_hub:  # fail now, not after the whole distillation
            from .hub import check_hub_token, check_repo_id

            check_repo_id(self.args.hub_dataset_id)
            check_hub_token(self.args.hub_token)

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

    # ---------------------------------------------------------------------------------------------------------------
    # Callbacks and logging
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
    # distill
    # ---------------------------------------------------------------------------------------------------------------
    def distill(self) -> Dataset:
        """Runs (or resumes) every stage and returns the distilled set (also written to ``output_dir/distilled``)."""
        acc, a = self.accelerator, self.args
        self._prepare_output_dir()
        if a.trackers:
            acc.init_trackers(
                a.run_name or "wmdd",
                config={k: v for k, v in a.to_dict().items() if isinstance(v, (int, float, str, bool))},
            )
        self._callback("on_train_begin")
        timings: dict[str, float] = {}
        # what this call found on disk, so that the stage seconds of a resumed run read right
        resumed = {
            s: (self.output_dir / f).exists()
            for s, f in (("statistics", "statistics.pt"), ("barycenter", "barycenters.pt"))
        }
        stats = self._timed("statistics", timings, self._statistics)
        bary = self._timed("barycenter", timings, self._barycenters, stats)
        self._timed("synthesis", timings, self._synthesize, stats, bary)
        resumed["synthesis_batches"] = self.state.skipped_batches
        dataset = None
        if acc.is_main_process:
            images, labels, histories = pipeline.collect_synthetic(self.run)
            soft = self._timed("soft_labels", timings, pipeline.soft_label_stage, self.run, images)
            self.state.stage = "save"
            start = time.time()
            dataset = pipeline.build_dataset(self.run, images, labels, soft, bary)
            self.metrics = pipeline.final_metrics(self.run, images, labels, soft, stats, bary, histories)
            pipeline.save_stage(self.run, dataset, soft, images, labels, stats, bary, self.metadata())
            timings["save_s"] = round(time.time() - start, 2)
        self.state.stage_seconds = timings
        self.metrics.update(timings, resumed=resumed)
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
        pipeline.decode_first(self.run)
        acc.wait_for_everyone()
        if acc.is_main_process:
            if not resuming and self.output_dir.exists() and a.overwrite_output_dir:
                ckpt.remove_run_files(self.output_dir)
            if self.output_dir.exists():
                ckpt.remove_stale_temporaries(self.output_dir)
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write_text(json.dumps(config, indent=2), self.output_dir / "run_config.json")
        acc.wait_for_everyone()

    def _timed(self, stage: str, timings: dict, fn, *args):
        self.state.stage = stage
        start = time.time()
        out = fn(*args)
        timings[f"{stage}_s"] = round(time.time() - start, 2)
        return out

    def _statistics(self) -> ClassStatistics:
        return pipeline.statistics_stage(self.run)

    def _barycenters(self, stats: ClassStatistics) -> dict[int, dict]:
        return pipeline.barycenter_stage(self.run, stats)

    def _synthesize(self, stats: ClassStatistics, bary: dict) -> None:
        self.state.max_steps = len(self.run.class_batches()) * self.args.iterations

        def on_batch(first_step: int) -> None:
            self.state.global_step = first_step

        def on_step(global_step: int) -> None:
            self.state.global_step = global_step
            self._callback("on_step_end")

        synthesized, skipped = pipeline.synthesis_stage(
            self.run, stats, bary, on_step, lambda record, classes: self.log(record), on_batch
        )
        self.state.synthesized_batches += synthesized
        self.state.skipped_batches += skipped

    def class_batches(self) -> list[list[int]]:
        """The classes optimised together, in order (identical whatever the number of processes)."""
        return self.run.class_batches()

    # ---------------------------------------------------------------------------------------------------------------
    # Results: metadata, save, push, evaluate
    # ---------------------------------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """What the card and ``wmdd_hf.json`` say about this run."""
        return pipeline.run_metadata(self.run, self.metrics)

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
