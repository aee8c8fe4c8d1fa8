"""What a published set is worth to a person who never imports wmdd_hf.

    python benchmarks/plain_user.py --distilled outputs/benchmark-v2/wasserstein-per_class-ipc10/distilled \
        --source ~/.cache/wmdd_hf/fashion_mnist-v2 --seeds 0 1 2

The person loads the distilled folder with ``datasets.load_dataset(folder)``, trains a small ``transformers``
image classifier (a ResNet from a tiny config: a family other than the teacher's ConvNet) with
``transformers.Trainer``, the usual crop + flip transforms of the image-classification tutorial and cross-entropy on
the hard labels; then once more with a KL loss on the stored ``soft_label`` column. ``--augment yes no`` adds the
same runs without augmentation (the images as stored). The same two runs on a random real
subset of the same size, drawn with ``datasets`` alone from the same training part (the benchmark's 5,000-image
validation split held out, seed 0, stratified), in the same script. Test accuracy on the real test split, read once
per model at the end. Results merge into ``benchmarks/results/fashion_mnist.json`` under ``plain_user``.

This file imports no wmdd_hf module (a test checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from datasets import load_dataset, load_from_disk
from torchvision import transforms
from transformers import ResNetConfig, ResNetForImageClassification, Trainer, TrainingArguments

ROOT = Path(__file__).resolve().parent.parent


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distilled", required=True, help="Folder of a distilled set (load_dataset reads it).")
    p.add_argument("--source", required=True, help="save_to_disk folder of the source dataset (train and test).")
    p.add_argument(
        "--random",
        default=None,
        help="Folder of a random real subset published the same way, with the same teacher's soft labels "
        "(python benchmarks/quality.py --stage publish_random). Default: drawn here with datasets, hard labels only.",
    )
    p.add_argument("--name", default="wmdd", help="Method name of the distilled set's rows (e.g. wmdd_init_real).")
    p.add_argument("--ipc", type=int, default=10)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--augment",
        nargs="+",
        choices=["yes", "no"],
        default=["yes"],
        help="Crop + flip (yes), the images as stored (no).",
    )
    p.add_argument("--validation_size", type=int, default=5000)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "fashion_mnist.json"))
    p.add_argument("--output_dir", default=str(ROOT / "outputs" / "plain_user"))
    return p.parse_args()


def random_subset(source_train, ipc: int, validation_size: int, seed: int = 0):
    """``ipc`` random rows per class of the training part (validation held out exactly as the benchmark does)."""
    train = source_train.train_test_split(test_size=validation_size, seed=0, stratify_by_column="label")["train"]
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(seed)
    rows = [int(r) for k in np.unique(labels) for r in rng.choice(np.where(labels == k)[0], ipc, replace=False)]
    return train.select(sorted(rows))


class SoftLabelTrainer(Trainer):
    """Trainer whose loss is KL(soft_label || model) when the batch carries soft labels."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        soft = inputs.pop("soft_labels", None)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        if soft is None:
            loss = F.cross_entropy(outputs.logits, labels)
        else:
            loss = F.kl_div(F.log_softmax(outputs.logits, 1), soft, reduction="batchmean")
        return (loss, outputs) if return_outputs else loss


def train_and_test(
    train, test, num_labels: int, soft: bool, seed: int, epochs: int, output_dir: str, augmented: bool = True
) -> float:
    plain = transforms.ToTensor()
    augment = (
        transforms.Compose(
            [
                transforms.RandomResizedCrop(28, scale=(0.5, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
            ]
        )
        if augmented
        else plain
    )

    def train_transform(batch):
        out = {"pixel_values": [augment(im.convert("L")) for im in batch["image"]], "labels": batch["label"]}
        if soft:
            out["soft_labels"] = [torch.tensor(s, dtype=torch.float32) for s in batch["soft_label"]]
        return out

    def test_transform(batch):
        return {"pixel_values": [plain(im.convert("L")) for im in batch["image"]], "labels": batch["label"]}

    config = ResNetConfig(
        num_channels=1,
        embedding_size=32,
        hidden_sizes=[32, 64, 128],
        depths=[1, 1, 1],
        layer_type="basic",
        num_labels=num_labels,
        downsample_in_first_stage=False,
    )
    torch.manual_seed(seed)
    model = ResNetForImageClassification(config)
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=32,
        learning_rate=1e-3,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        logging_strategy="no",
        save_strategy="no",
        report_to=[],
        seed=seed,
        remove_unused_columns=False,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        per_device_eval_batch_size=500,
        dataloader_num_workers=0,
    )
    trainer = SoftLabelTrainer(model=model, args=args, train_dataset=train.with_transform(train_transform))
    trainer.train()
    prediction = trainer.predict(test.with_transform(test_transform))
    return float((prediction.predictions.argmax(1) == np.asarray(test["label"])).mean())


def plain_key(row: dict) -> tuple:
    """What identifies a plain-user row (rows from before ``augment`` existed were trained with crop + flip)."""
    return row["method"], row["ipc"], row["labels"], row.get("augment", True)


def main() -> None:
    args = parse()
    source = load_from_disk(args.source)
    distilled = load_dataset(args.distilled, split="train")
    test = source["test"]
    if args.random:
        random_set = load_dataset(args.random, split="train")
    else:
        random_set = random_subset(source["train"], args.ipc, args.validation_size)
    num_labels = source["train"].features["label"].num_classes
    rows = []
    runs = [
        (method, dataset, labels, augment)
        for augment in args.augment
        for method, dataset in ((args.name, distilled), ("random", random_set))
        for labels in ("hard", "soft")
        # a random subset has no soft labels of its own: the person would not have any either
        if labels == "hard" or "soft_label" in dataset.column_names
    ]
    for method, dataset, labels, augment in runs:
        start = time.time()
        accs = [
            train_and_test(
                dataset, test, num_labels, labels == "soft", s, args.epochs, args.output_dir, augment == "yes"
            )
            for s in args.seeds
        ]
        row = {
            "method": method,
            "ipc": args.ipc,
            "labels": labels,
            "augment": augment == "yes",
            "acc": float(np.mean(accs)),
            "acc_std": float(np.std(accs)),
            "accs": accs,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "student": "transformers ResNet (basic, 32-64-128, depths 1-1-1)",
            "seconds": round(time.time() - start, 1),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "set": str(args.distilled if method == args.name else args.random),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    path = Path(args.results)
    data = json.loads(path.read_text()) if path.exists() else {"results": []}
    keep = [r for r in data.get("plain_user", []) if plain_key(r) not in {plain_key(x) for x in rows}]
    data["plain_user"] = keep + rows
    cmd = "python benchmarks/plain_user.py " + " ".join(sys.argv[1:])
    data.setdefault("commands", [])
    if cmd not in data["commands"]:
        data["commands"].append(cmd)
    path.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
