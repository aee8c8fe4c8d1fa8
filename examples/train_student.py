"""Train your own model on a distilled set (or any subset with the same columns) and test it on the real split.

    python examples/train_student.py --distilled outputs/wmdd-fashion-mnist-ipc10/distilled --labels soft_label
    python examples/train_student.py --distilled user/fashion-mnist-wmdd-ipc10 --labels views --seeds 0 1 2
    python examples/train_student.py --distilled user/set --model microsoft/resnet-18 --labels hard
    accelerate launch examples/train_student.py --distilled user/set --model timm:resnet18_small --labels soft_label

Label sources (``--labels``): ``hard`` (the ``label`` column, cross-entropy), ``soft_label`` (the stored teacher
probabilities, KL at ``--temperature``), ``views`` (the ``soft_labels`` config replayed: each stored view with the
teacher's logits on it, no teacher needed). ``--model``: ``resnet-tiny`` (a small transformers ResNet built from
scratch), a transformers id or folder (its head resized to the set's classes), or ``timm:<name>`` (trained by the
library's own student loop, ``wmdd_hf.evaluate_distilled``, with the matching protocol).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np
import torch

from wmdd_hf import console, load_distilled, load_image_dataset
from wmdd_hf.cli import parse_args

LABELS = ("hard", "soft_label", "views")


@dataclass
class StudentArguments:
    distilled: str = field(metadata={"help": "The distilled set: a local folder or a Hub dataset id."})
    labels: str = field(default="soft_label", metadata={"help": f"Label source: one of {', '.join(LABELS)}."})
    model: str = field(
        default="resnet-tiny",
        metadata={"help": "'resnet-tiny', a transformers id or folder, or 'timm:<name>' (trained from scratch)."},
    )
    dataset: str = field(default="fashion_mnist", metadata={"help": "The real dataset whose split tests the student."})
    eval_split: str = field(default="test", metadata={"help": "The real split the student is tested on, once."})
    epochs: int = field(default=200, metadata={"help": "Passes over the set (with 'views': over its stored views)."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (cosine schedule)."})
    batch_size: int = field(default=32, metadata={"help": "Images per step."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (transformers students)."})
    temperature: float = field(default=1.0, metadata={"help": "KL temperature of the soft label sources."})
    augment: bool = field(default=True, metadata={"help": "Random resized crop and flip ('hard', 'soft_label')."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "One student per seed."})
    output_dir: str | None = field(default=None, metadata={"help": "Trainer output (default: a temporary folder)."})


def tiny_resnet(channels: int, num_classes: int):
    """A transformers ResNet (basic blocks, 32-64-128 channels, one block per stage) built from scratch."""
    from transformers import AutoModelForImageClassification, ResNetConfig

    config = ResNetConfig(
        num_channels=channels,
        embedding_size=32,
        hidden_sizes=[32, 64, 128],
        depths=[1, 1, 1],
        layer_type="basic",
        num_labels=num_classes,
    )
    return AutoModelForImageClassification.from_config(config)


def transformers_model(name: str, channels: int, num_classes: int):
    if name == "resnet-tiny":
        return tiny_resnet(channels, num_classes)
    from transformers import AutoConfig, AutoModelForImageClassification

    config = AutoConfig.from_pretrained(name, num_labels=num_classes)
    return AutoModelForImageClassification.from_config(config)  # from scratch: the set is the training data


def image_transform(size: int, augment: bool):
    from torchvision import transforms

    steps = [transforms.RandomResizedCrop(size, (0.5, 1.0)), transforms.RandomHorizontalFlip()] if augment else []
    return transforms.Compose([*steps, transforms.ToTensor()])


def train_transformers(a: StudentArguments, distilled, views, test, seed: int) -> float:
    """One transformers student on the set with ``a.labels``; its top-1 accuracy on ``test`` (read once)."""
    from transformers import TrainingArguments, set_seed

    from wmdd_hf.trainer import SoftLabelTrainer, StoredViewsDataset, soft_label_transform

    set_seed(seed)
    first = distilled[0]["image"]
    channels, size = (1 if first.mode == "L" else 3), first.height
    model = transformers_model(a.model, channels, distilled.features["label"].num_classes)
    mode = "L" if channels == 1 else "RGB"
    if a.labels == "views":  # every stored view once per pass over them: the same number of image passes
        train = StoredViewsDataset(distilled, views)
        epochs = a.epochs / (views.num_rows // len(distilled))
    else:  # without the soft_label column the trainer falls back to cross-entropy on the labels
        columns = distilled if a.labels == "soft_label" else distilled.remove_columns(["soft_label"])
        train = columns.with_transform(soft_label_transform(image_transform(size, a.augment), mode=mode))
        epochs = float(a.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            a.output_dir or tmp,
            num_train_epochs=epochs,
            learning_rate=a.learning_rate,
            per_device_train_batch_size=a.batch_size,
            weight_decay=a.weight_decay,
            lr_scheduler_type="cosine",
            seed=seed,
            report_to=[],
            save_strategy="no",
            logging_strategy="no",
            remove_unused_columns=False,
            disable_tqdm=True,
        )
        trainer = SoftLabelTrainer(model=model, args=args, train_dataset=train, temperature=a.temperature)
        trainer.train()
        tested = test.with_transform(soft_label_transform(image_transform(size, False), mode=mode))
        prediction = trainer.predict(tested)
    return float((np.argmax(prediction.predictions, axis=1) == np.asarray(test["label"])).mean())


def train_timm(a: StudentArguments, distilled, test, seed: int) -> float:
    """The library's own student loop: ``hard`` -> the hard protocol, ``soft_label`` -> fixed, ``views`` -> soft with
    the stored views (no teacher in any of them), for as many steps as ``a.epochs`` passes of ``a.batch_size``."""
    from wmdd_hf import EvaluationConfig, evaluate_distilled

    protocol = {"hard": "hard", "soft_label": "fixed", "views": "soft"}[a.labels]
    steps = a.epochs * -(-len(distilled) // a.batch_size)
    config = EvaluationConfig(
        protocol=protocol,
        student=a.model.removeprefix("timm:"),
        augment=a.augment,
        steps=steps,
        batch_size=a.batch_size,
        temperature=a.temperature if a.labels == "soft_label" else None,  # views: the library's KD temperature
        progress=False,
    )
    result = evaluate_distilled(
        a.distilled, test, config=config, seeds=(seed,), use_stored_soft_labels=a.labels == "views"
    )
    return float(result["accs"][0])


def main() -> None:
    (a,) = parse_args((StudentArguments,))
    if a.labels not in LABELS:
        raise SystemExit(f"--labels {a.labels!r}: choose one of {', '.join(LABELS)}.")
    distilled, views, _ = load_distilled(a.distilled)
    if a.labels == "views" and views is None:
        raise SystemExit("--labels views needs a set with stored views (its soft_labels config); this one has none.")
    test = load_image_dataset(a.dataset, a.eval_split)
    # under `accelerate launch` the transformers Trainer shares every step between the processes; the library's timm
    # student loop is one process's, so the others leave it to the main one; only the main process prints
    main_process = int(os.environ.get("RANK", "0")) == 0  # the launcher's rank: no process group made here
    if a.model.startswith("timm:") and not main_process:
        return
    torch.manual_seed(0)
    accs = []
    for seed in a.seeds:
        accs.append(
            train_timm(a, distilled, test, seed)
            if a.model.startswith("timm:")
            else train_transformers(a, distilled, views, test, seed)
        )
        if main_process:
            print(json.dumps({"seed": seed, "acc": accs[-1]}), flush=True)
    summary = {"distilled": a.distilled, "labels": a.labels, "model": a.model, "augment": a.augment, "seeds": a.seeds}
    if main_process:
        print(json.dumps({**summary, "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)), "accs": accs}))


if __name__ == "__main__":
    sys.exit(console.run(main))
