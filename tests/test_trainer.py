"""wmdd_hf.trainer: a user's transformers model trained on a set's soft_label column with transformers.Trainer."""

import numpy as np
import torch
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value, load_dataset

from wmdd_hf.trainer import SoftLabelTrainer, soft_label_loss, soft_label_transform


def test_soft_label_loss_is_the_kl_of_the_stored_probabilities():
    g = torch.Generator().manual_seed(0)
    logits, p = torch.randn(6, 4, generator=g), torch.softmax(torch.randn(6, 4, generator=g), 1)
    kl = (p * (p.log() - torch.log_softmax(logits, 1))).sum(1).mean()
    torch.testing.assert_close(soft_label_loss(logits, p), kl)
    p2 = p.sqrt() / p.sqrt().sum(1, keepdim=True)  # softmax(log p / 2)
    kl2 = 4 * (p2 * (p2.log() - torch.log_softmax(logits / 2, 1))).sum(1).mean()
    torch.testing.assert_close(soft_label_loss(logits, p, temperature=2.0), kl2)


def test_a_model_trained_on_a_loaded_set_follows_its_soft_labels_not_its_hard_ones(tmp_path):
    """Each image's soft label puts its mass on the class after its hard label: a model that learnt from the soft
    column predicts that class. load_dataset on parquet, default TrainingArguments (remove_unused_columns on)."""
    from torchvision import transforms
    from transformers import ResNetConfig, ResNetForImageClassification, TrainingArguments

    rng = np.random.default_rng(0)
    n, k = 20, 4
    labels = np.arange(n) % k
    soft = np.full((n, k), 0.02, dtype=np.float32)
    soft[np.arange(n), (labels + 1) % k] = 1 - 0.02 * (k - 1)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(n)]
    features = Features(
        {"image": Image(), "label": ClassLabel(num_classes=k), "soft_label": Sequence(Value("float32"))}
    )
    Dataset.from_dict({"image": images, "label": labels, "soft_label": soft.tolist()}, features=features).to_parquet(
        str(tmp_path / "set.parquet")
    )
    train = load_dataset("parquet", data_files=str(tmp_path / "set.parquet"), split="train")
    train.set_transform(soft_label_transform(transforms.ToTensor(), mode="L"))
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=k)
    torch.manual_seed(0)
    model = ResNetForImageClassification(config)
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=60,
        per_device_train_batch_size=10,
        learning_rate=3e-3,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    SoftLabelTrainer(model=model, args=args, train_dataset=train).train()
    model.eval()
    with torch.no_grad():
        pixels = torch.stack(
            [
                transforms.ToTensor()(im)
                for im in load_dataset("parquet", data_files=str(tmp_path / "set.parquet"), split="train")["image"]
            ]
        )
        predicted = model(pixel_values=pixels).logits.argmax(1).numpy()
    assert (predicted == (labels + 1) % k).mean() >= 0.9
    assert (predicted == labels).mean() <= 0.1
