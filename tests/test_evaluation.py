import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from wmdd_hf import load_backbone
from wmdd_hf.baselines import herding_indices, kcenter_indices, nearest_indices, random_indices
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled


def _brightness_dataset(n_per_class, seed, shuffle_labels=False):
    """Class 0: dark images, class 1: bright images (trivially separable)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in (0, 1):
        for _ in range(n_per_class):
            base = 60 if k == 0 else 190
            images.append(PILImage.fromarray(np.clip(rng.normal(base, 25, (16, 16)), 0, 255).astype(np.uint8)))
            labels.append(k)
    if shuffle_labels:
        labels = rng.permutation(labels).tolist()
    return Dataset.from_dict(
        {"image": images, "label": labels},
        features=Features({"image": Image(), "label": ClassLabel(names=["dark", "bright"])}),
    )


def _oracle_teacher():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([-torch.ones(256), torch.ones(256)]) / 256 * 20)
        net[1].bias.zero_()
    return load_backbone(net, in_chans=1, img_size=16, mean=(0.5,), std=(0.5,))


FAST = dict(student_kwargs={"width": 8, "depth": 2}, epochs=40, batch_size=20, progress=False)


def test_separable_data_gives_high_accuracy_and_shuffled_labels_do_not():
    train, test = _brightness_dataset(20, 0), _brightness_dataset(100, 1)
    good = evaluate_distilled(train, test, config=EvaluationConfig(protocol="hard", **FAST), seeds=(0, 1))
    assert good["acc_mean"] >= 0.95, good
    noise = evaluate_distilled(
        _brightness_dataset(20, 0, shuffle_labels=True),
        test,
        config=EvaluationConfig(protocol="hard", **FAST),
        seeds=(0, 1),
    )
    assert noise["acc_mean"] <= 0.8, noise
    assert len(good["curves"]) == 2 and good["curves"][0][-1][0] == 40
    assert good["protocol"]["optimizer"].startswith("SGD")


def test_soft_protocol_learns_from_the_teacher_even_with_wrong_labels(tmp_path):
    train = _brightness_dataset(10, 0, shuffle_labels=True)
    test = _brightness_dataset(100, 1)
    result = evaluate_distilled(
        train,
        test,
        teacher=_oracle_teacher(),
        config=EvaluationConfig(protocol="soft", **FAST),
        seeds=(0,),
        plot_path=str(tmp_path / "curve.png"),
    )
    assert result["acc_mean"] >= 0.95, result
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_soft_protocol_needs_labels_from_somewhere():
    with pytest.raises(ValueError, match="needs a teacher or stored soft labels"):
        evaluate_distilled(
            _brightness_dataset(2, 0),
            _brightness_dataset(2, 1),
            config=EvaluationConfig(protocol="soft", **FAST),
            seeds=(0,),
        )


def test_selectors():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(200, 4))
    for idx in (random_indices(200, 7, 0), herding_indices(f, 7), kcenter_indices(f, 7)):
        assert len(set(idx.tolist())) == 7 and idx.max() < 200
    # herding's running mean is closer to the class mean than a random subset's
    h, r = herding_indices(f, 10), random_indices(200, 10, 1)
    assert np.sum((f[h].mean(0) - f.mean(0)) ** 2) < np.sum((f[r].mean(0) - f.mean(0)) ** 2)

    # k-center covers: its max distance to the nearest center beats random's
    def radius(idx):
        return np.min(((f[:, None] - f[idx][None]) ** 2).sum(-1), 1).max()

    assert radius(kcenter_indices(f, 10)) < radius(r)
    assert nearest_indices(f, f[[5, 9]]).tolist() == [5, 9]
