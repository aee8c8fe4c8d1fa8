"""Per-class normalisation statistics beyond BatchNorm: ViT LayerNorms (timm, transformers), GroupNorm, mixed."""

import pytest
import torch
from datasets import load_dataset
from transformers import ViTConfig, ViTForImageClassification

from wmdd_hf import DistillationArguments, Distiller, load_backbone
from wmdd_hf.checkpoint import load


def _vit_teachers():
    torch.manual_seed(0)
    hf = ViTForImageClassification(
        ViTConfig(
            image_size=28,
            patch_size=7,
            num_channels=1,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=10,
        )
    )
    timm_vit = load_backbone(
        "vit_tiny_patch16_224",
        num_classes=10,
        in_chans=1,
        img_size=28,
        pretrained=False,
        patch_size=7,
        embed_dim=32,
        depth=2,
        num_heads=2,
    )
    return {"transformers": load_backbone(hf), "timm": timm_vit}


@pytest.mark.parametrize("kind", ["transformers", "timm"])
def test_vit_pipeline_matches_per_class_layernorm_statistics(kind, tmp_path, small_train):
    teacher = _vit_teachers()[kind]
    assert teacher.norm_kinds() == {"layer"}
    args = DistillationArguments(
        output_dir=str(tmp_path / "run"),
        images_per_class=2,
        iterations=40,
        batch_size=20,
        logging_steps=5,
        learning_rate=0.05,
        bn_weight=10.0,  # the default, with the default loss_scale="mean"
        disable_tqdm=True,
        save_plots=False,
    )
    distiller = Distiller(teacher, args, small_train.select(range(0, 3000, 3)))
    distiller.distill()
    stats = load(tmp_path / "run" / "statistics.pt")
    assert set(stats["layer_kinds"].values()) == {"layer"}
    n_layers = len(teacher.norm_layers())
    assert len(stats["norms"]) == n_layers
    for _count, mean, m2 in stats["norms"].values():
        assert mean.shape == (10, 32) and torch.all(m2 > 0)
    history = load(tmp_path / "run" / "synthetic" / "batch_00000.pt")["history"]
    assert history[-1]["bn_loss"] < 0.5 * history[0]["bn_loss"], history
    assert distiller.metrics["feature_loss_end"] < distiller.metrics["feature_loss_start"]
    assert len(load_dataset(str(tmp_path / "run" / "distilled"), split="train")) == 20


def test_group_norm_models_work(tmp_path, small_train):
    torch.manual_seed(0)
    teacher = load_backbone(
        "wmdd_convnet", num_classes=10, in_chans=1, width=8, depth=2, norm="group", pretrained=False
    )
    assert teacher.norm_kinds() == {"group"}
    args = DistillationArguments(
        output_dir=str(tmp_path / "run"),
        images_per_class=1,
        iterations=20,
        batch_size=10,
        logging_steps=5,
        disable_tqdm=True,
        save_plots=False,
    )
    Distiller(teacher, args, small_train.select(range(0, 3000, 10))).distill()
    history = load(tmp_path / "run" / "synthetic" / "batch_00000.pt")["history"]
    assert history[-1]["bn_loss"] < history[0]["bn_loss"]


def test_mixed_batchnorm_and_layernorm_models_use_both(small_train):
    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.ln = torch.nn.LayerNorm(4 * 28 * 28)
            self.fc = torch.nn.Linear(4 * 28 * 28, 10)

        def forward(self, x):
            return self.fc(self.ln(torch.relu(self.bn(self.conv(x))).flatten(1)))

    from wmdd_hf.statistics import collect_class_statistics

    teacher = load_backbone(Mixed(), in_chans=1, img_size=28).eval()
    assert teacher.norm_kinds() == {"batch", "layer"}
    x = torch.randint(0, 256, (30, 1, 28, 28), dtype=torch.uint8)
    stats = collect_class_statistics(teacher, [(x, torch.arange(30) % 10, torch.arange(30))], 10)
    assert stats.norms["bn"].mean.shape == (10, 4) and stats.norms["ln"].mean.shape == (10, 4 * 28 * 28)
