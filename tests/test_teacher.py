"""examples/train_teacher.py's trainer on data that is not Fashion-MNIST: the size, channels and normalisation come
from the data, and a dataset smaller than one batch trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from PIL import Image as PILImage

from wmdd_hf import load_backbone
from wmdd_hf.data import ImageSpec
from wmdd_hf.teacher import TeacherTrainingArguments, train_teacher


def _colour_folder(tmp_path, per_class: int = 12, size: int = 32):
    rng = np.random.default_rng(0)
    features = Features({"image": Image(), "label": ClassLabel(names=["reddish", "bluish"])})
    splits, pixels = {}, []
    for split, n in (("train", per_class), ("test", 4)):
        images, labels = [], []
        for label, channel in ((0, 0), (1, 2)):
            for _ in range(n):
                a = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                a[..., channel] = rng.integers(150, 256, (size, size), dtype=np.uint8)
                images.append(PILImage.fromarray(a, mode="RGB"))
                labels.append(label)
                if split == "train":
                    pixels.append(a)
        splits[split] = Dataset.from_dict({"image": images, "label": labels}, features=features)
    folder = tmp_path / "colours"
    DatasetDict(splits).save_to_disk(str(folder))
    return folder, np.stack(pixels).astype(np.float64) / 255


@pytest.mark.parametrize("model", ["wmdd_convnet", "resnet18_small"])
def test_teacher_takes_size_channels_and_normalisation_from_the_data(model, tmp_path):
    folder, pixels = _colour_folder(tmp_path)
    out = tmp_path / "teacher"
    args = TeacherTrainingArguments(
        output_dir=str(out), model=model, dataset=str(folder), epochs=1, width=8, eval_every=1
    )
    assert args.batch_size > len(pixels)  # smaller than one batch
    result = train_teacher(args)
    assert 0 <= result["test_acc"] <= 1
    teacher = load_backbone(out)
    assert teacher.spec == ImageSpec(3, (32, 32))
    np.testing.assert_allclose(teacher.data_config["mean"], pixels.mean((0, 1, 2)), atol=1e-5)
    np.testing.assert_allclose(teacher.data_config["std"], pixels.std((0, 1, 2)), atol=1e-5)
    config = json.loads((out / "config.json").read_text())
    assert config["pretrained_cfg"]["tag"] == "colours"
    assert args.img_size is None, "the caller's arguments were changed"


def test_the_small_image_resnet_keeps_every_position_into_its_first_stage():
    import timm
    import torch

    import wmdd_hf  # noqa: F401 - registers resnet18_small

    net = timm.create_model("resnet18_small", num_classes=10, in_chans=3, img_size=32).eval()
    seen = {}
    net.layer1.register_forward_hook(lambda _m, _i, out: seen.update(layer1=out.shape))
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert seen["layer1"] == (2, 64, 32, 32)  # the ImageNet stem (stride 2 + max-pool) gives 8 x 8
    assert isinstance(net.maxpool, torch.nn.Identity) and net.conv1.stride == (1, 1)
    assert net.pretrained_cfg["input_size"] == (3, 32, 32)


def test_disable_tqdm_silences_the_teacher_trainers_bars_but_not_its_epoch_lines(tmp_path, capsys):
    folder, _ = _colour_folder(tmp_path)
    args = TeacherTrainingArguments(
        output_dir=str(tmp_path / "teacher"), dataset=str(folder), epochs=1, width=8, disable_tqdm=True
    )
    train_teacher(args)
    out = capsys.readouterr()
    assert "epoch 1/1" not in out.err and "it/s" not in out.err  # no progress bar
    assert "epoch 1: test accuracy" in out.out


def test_validation_size_keeps_the_benchmarks_validation_part_away_from_the_teacher(tmp_path):
    folder, _ = _colour_folder(tmp_path)
    out = tmp_path / "teacher"
    args = TeacherTrainingArguments(
        output_dir=str(out), dataset=str(folder), epochs=1, width=8, eval_every=1, validation_size=4
    )
    train_teacher(args)
    from datasets import load_from_disk

    kept = load_from_disk(str(folder))["train"].train_test_split(test_size=4, seed=0, stratify_by_column="label")
    pixels = np.stack([np.asarray(im) for im in kept["train"]["image"]]).astype(np.float64) / 255
    teacher = load_backbone(out)
    np.testing.assert_allclose(teacher.data_config["mean"], pixels.mean((0, 1, 2)), atol=1e-5)
    meta = json.loads((out / "wmdd_hf.json").read_text())
    assert "less its 4-image validation part" in meta["trained_on"]
    command = meta["command"].split()
    assert command[:2] == ["python", "examples/train_teacher.py"]
    assert command[command.index("--validation_size") + 1] == "4" and "--batch_size" not in command
