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


def _distilled_with_views(tmp_path, tiny_teacher, small_train):
    from wmdd_hf import DistillationArguments, Distiller

    args = DistillationArguments(
        output_dir=str(tmp_path / "run"), images_per_class=1, iterations=2, soft_label_epochs=2, disable_tqdm=True
    )
    Distiller(tiny_teacher, args, small_train).distill()
    return tmp_path / "run" / "distilled"


def test_stored_views_replay_the_views_the_teacher_labelled(tmp_path, tiny_teacher, small_train):
    from wmdd_hf import StoredViewsDataset, load_distilled
    from wmdd_hf.evaluation import _as_tensors

    distilled, views, _ = load_distilled(str(_distilled_with_views(tmp_path, tiny_teacher, small_train)))
    replay = StoredViewsDataset(distilled, views)
    assert len(replay) == 2 * len(distilled)
    pixels = _as_tensors(distilled, tiny_teacher.spec)[0].float() / 255
    row = len(distilled) + 3  # epoch 1, image 3
    item = replay[row]
    assert item["labels"] == distilled[3]["label"]
    with torch.no_grad():  # the teacher on the replayed view gives back the stored logits
        online = tiny_teacher(item["pixel_values"][None])[0][0]
    stored = torch.tensor(views[row]["logits"])
    torch.testing.assert_close(item["soft_labels"], torch.softmax(stored.float(), -1))
    torch.testing.assert_close(online, stored.float(), atol=2e-2, rtol=1e-2)
    assert not torch.equal(item["pixel_values"], pixels[3])  # a view, not the stored image itself


def test_the_student_script_trains_with_each_label_source(tmp_path, tiny_teacher, small_train, small_test, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    from wmdd_hf import load_distilled

    spec = importlib.util.spec_from_file_location(
        "train_student", Path(__file__).parent.parent / "examples" / "train_student.py"
    )
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_student", script)  # its dataclass resolves its annotations there
    spec.loader.exec_module(script)
    folder = str(_distilled_with_views(tmp_path, tiny_teacher, small_train))
    distilled, views, _ = load_distilled(folder)
    for labels in script.LABELS:
        a = script.StudentArguments(
            distilled=folder, labels=labels, epochs=2, batch_size=8, output_dir=str(tmp_path / labels)
        )
        acc = script.train_transformers(a, distilled, views, small_test, seed=0)
        assert 0.0 <= acc <= 1.0
        timm = script.StudentArguments(
            distilled=folder, labels=labels, model="timm:wmdd_convnet", epochs=2, batch_size=8
        )
        assert 0.0 <= script.train_timm(timm, distilled, small_test, seed=0) <= 1.0
