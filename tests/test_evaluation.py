import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from wmdd_hf import load_backbone
from wmdd_hf.baselines import herding_indices, kcenter_indices, nearest_indices, random_indices
from wmdd_hf.evaluation import EvaluationConfig, evaluate_distilled, kd_loss, with_soft_labels


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


FAST = dict(student_kwargs={"width": 8, "depth": 2}, steps=80, batch_size=20, progress=False)


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
    assert good["protocol"]["steps"] == 80
    assert good["protocol"]["optimizer"].startswith("SGD")


def test_soft_protocol_learns_from_the_teacher_even_with_wrong_labels(tmp_path):
    train = _brightness_dataset(10, 0, shuffle_labels=True)
    test = _brightness_dataset(100, 1)
    result = evaluate_distilled(
        train,
        test,
        teacher=_oracle_teacher(),
        config=EvaluationConfig(protocol="soft", eval_every=20, **FAST),
        seeds=(0,),
        plot_path=str(tmp_path / "curve.png"),
        validation_dataset=_brightness_dataset(30, 2),
    )
    assert result["acc_mean"] >= 0.95, result
    assert [s for s, _ in result["curves"][0]] == [20, 40, 60, 80]  # validation curve, every 20 steps
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_soft_protocol_needs_labels_from_somewhere():
    with pytest.raises(
        ValueError, match=r"needs a teacher \(this set carries none in teacher/\).*use_stored_soft_labels"
    ):
        evaluate_distilled(
            _brightness_dataset(2, 0),
            _brightness_dataset(2, 1),
            config=EvaluationConfig(protocol="soft", **FAST),
            seeds=(0,),
        )


def test_fixed_protocol_learns_from_the_soft_label_column_without_a_teacher():
    test = _brightness_dataset(100, 1)
    # wrong class labels, right soft labels: only the column can teach the brightness rule
    labelled = with_soft_labels(_brightness_dataset(10, 0, shuffle_labels=True), _oracle_teacher())
    probs = np.asarray(labelled["soft_label"])
    assert probs.shape == (20, 2) and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert (probs.argmax(1) == np.repeat([0, 1], 10)).all()  # dark then bright, whatever the shuffled labels say
    config = EvaluationConfig(protocol="fixed", **FAST)
    good = evaluate_distilled(labelled, test, config=config, seeds=(0,))
    assert good["acc_mean"] >= 0.95, good
    assert good["protocol"]["temperature"] == 1.0 and "no teacher" in good["protocol"]["labels"]
    assert "cutmix" not in good["protocol"]["augmentation"] and not good["weighted"]
    # the same images with the column's rows swapped between the classes: the student follows the column
    swapped = labelled.remove_columns("soft_label").add_column("soft_label", probs[:, ::-1].tolist())
    bad = evaluate_distilled(swapped, test, config=config, seeds=(0,))
    assert bad["acc_mean"] <= 0.05, bad


def test_fixed_protocol_never_runs_a_teacher_even_when_given_one(monkeypatch):
    teacher = _oracle_teacher()
    labelled = with_soft_labels(_brightness_dataset(4, 0), teacher)

    def boom(*args, **kwargs):
        raise AssertionError("the fixed protocol ran the teacher")

    monkeypatch.setattr(teacher.model, "forward", boom)
    result = evaluate_distilled(
        labelled, _brightness_dataset(5, 1), teacher=teacher, config=EvaluationConfig(protocol="fixed", **FAST)
    )
    assert len(result["accs"]) == 3


def test_fixed_protocol_without_a_soft_label_column_names_the_fix():
    with pytest.raises(ValueError, match="with_soft_labels"):
        evaluate_distilled(
            _brightness_dataset(2, 0),
            _brightness_dataset(2, 1),
            config=EvaluationConfig(protocol="fixed", **FAST),
            seeds=(0,),
        )


def test_with_soft_labels_replaces_an_existing_column():
    data = _brightness_dataset(3, 0).add_column("soft_label", [[0.5, 0.5]] * 6)
    out = with_soft_labels(data, _oracle_teacher(), temperature=1.0)
    assert out.column_names.count("soft_label") == 1
    assert (np.asarray(out["soft_label"]).argmax(1) == np.repeat([0, 1], 3)).all()


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


def test_weighted_kd_multiplies_each_images_term_by_its_normalised_weight():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5), torch.randn(2, 5)
    t = 4.0

    def kl_one(i):  # KL(softmax(teacher/T) || softmax(student/T)) of image i, by the textbook formula
        q = torch.softmax(teacher[i] / t, 0)
        p = torch.softmax(student[i] / t, 0)
        return float((q * (q.log() - p.log())).sum())

    # weights (1, 3): batch mean 2, normalised (0.5, 1.5)
    expected = (0.5 * kl_one(0) + 1.5 * kl_one(1)) / 2 * t**2
    assert float(kd_loss(student, teacher, t, torch.tensor([1.0, 3.0]))) == pytest.approx(expected, rel=1e-5)
    plain = (kl_one(0) + kl_one(1)) / 2 * t**2
    assert float(kd_loss(student, teacher, t)) == pytest.approx(plain, rel=1e-5)
    assert float(kd_loss(student, teacher, t, torch.tensor([2.0, 2.0]))) == pytest.approx(plain, rel=1e-5)


def test_weighted_kd_is_used_when_the_set_has_barycenter_weights(monkeypatch):
    import wmdd_hf.evaluation as ev

    seen = []
    real = ev.kd_loss
    monkeypatch.setattr(ev, "kd_loss", lambda s, t, temp, w=None: seen.append(w) or real(s, t, temp, w))
    train = _brightness_dataset(4, 0).add_column("barycenter_weight", [1.0, 2.0, 3.0, 4.0] * 2)
    config = dict(FAST, steps=2, batch_size=8)
    evaluate_distilled(train, _brightness_dataset(2, 1), teacher=_oracle_teacher(), seeds=(0,), **config)
    assert seen[0] is not None and sorted(seen[0].tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]
    seen.clear()
    evaluate_distilled(
        train, _brightness_dataset(2, 1), teacher=_oracle_teacher(), seeds=(0,), weighted_kd=False, **config
    )
    assert seen == [None, None]


def test_stored_and_online_paths_train_on_the_teachers_logits_for_the_views_they_render(monkeypatch):
    """The stored path's target for a rendered view equals what the online teacher says about that very view."""
    import wmdd_hf.evaluation as ev
    from wmdd_hf import AugmentConfig, augmented_soft_labels

    teacher = _oracle_teacher()
    torch.manual_seed(0)
    with torch.no_grad():  # a teacher whose logits depend on where the pixels are, so that views matter
        teacher.model[1].weight.add_(torch.randn_like(teacher.model[1].weight) * 0.5)
    train = _brightness_dataset(4, 0)
    images, labels, _ = ev._as_tensors(train, teacher.spec)
    stored = augmented_soft_labels(
        teacher, images.float() / 255, epochs=2, augment=AugmentConfig(scale=(0.5, 1.0)), seed=1, cutmix_p=1.0, block=8
    )
    recorded = []
    real_build = ev.build_student

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            recorded.append(("x", x.detach().clone()))
            return self.inner(x)

    monkeypatch.setattr(ev, "build_student", lambda *a, **k: Spy(real_build(*a, **k)))
    real_loss = ev.kd_loss
    monkeypatch.setattr(
        ev, "kd_loss", lambda s, t, temp, w=None: recorded.append(("t", t.detach())) or real_loss(s, t, temp, w)
    )
    config = EvaluationConfig(**dict(FAST, steps=4, batch_size=8))
    for teacher_arg, stored_arg in ((None, stored), (teacher, None)):
        recorded.clear()
        ev.train_student(images, labels, config, seed=0, teacher=teacher_arg, stored=stored_arg, num_classes=2)
        xs = [v for k, v in recorded if k == "x"]
        ts = [v for k, v in recorded if k == "t"]
        assert len(xs) == len(ts) == 4
        for x, target in zip(xs, ts):
            with torch.no_grad():
                online = teacher(x)[0]
            torch.testing.assert_close(target.float(), online, atol=2e-2, rtol=1e-2)


def test_evaluation_keeps_every_tensor_on_the_device_it_was_given():
    """A teacher that asserts the device of its inputs, and a function mode that records every device a tensor is
    created on or moved to: all must be the given device."""
    from torch.overrides import TorchFunctionMode

    device = torch.device("cpu")
    seen = set()

    class Devices(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            for value in list(args) + list(kwargs.values()):
                if isinstance(value, (torch.device, str)) and str(value).split(":")[0] in (
                    "cuda",
                    "mps",
                    "meta",
                    "xpu",
                ):
                    seen.add(str(value))
            if "device" in kwargs and kwargs["device"] is not None:
                seen.add(str(torch.device(kwargs["device"])))
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                seen.add(str(out.device))
            return out

    teacher = _oracle_teacher()

    def checked(module, args):
        assert args[0].device == device, f"teacher input on {args[0].device}"

    teacher.register_forward_pre_hook(checked)
    train, test = _brightness_dataset(4, 0), _brightness_dataset(4, 1)
    with Devices():
        result = evaluate_distilled(
            train, test, teacher=teacher, seeds=(0,), device=device, validation_dataset=test, **dict(FAST, steps=3)
        )
    assert result["protocol"]["steps"] == 3
    assert seen == {"cpu"}, seen


def test_channels_last_students_train_to_the_same_weights(monkeypatch):
    """NHWC is a speed setting: the same seed gives the same student up to float rounding, in either layout."""
    import wmdd_hf.evaluation as ev

    built = []
    real_build = ev.build_student
    monkeypatch.setattr(ev, "build_student", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 3, 16, 16), dtype=torch.uint8, generator=g)
    labels = torch.arange(3).repeat(8)
    teacher = load_backbone(
        "wmdd_convnet", num_classes=3, in_chans=3, img_size=16, width=8, depth=2, pretrained=False
    ).eval()
    config = dict(student_kwargs={"width": 8, "depth": 2}, steps=6, batch_size=12, progress=False)
    for channels_last in (False, True):
        ev.train_student(images, labels, EvaluationConfig(channels_last=channels_last, **config), teacher=teacher)
    plain, nhwc = built
    conv = next(p for p in nhwc.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last) and conv.shape[1] == 3
    start = real_build(EvaluationConfig(**config).resolved(24, 3), ev.ImageSpec(3, (16, 16)), 3, 0)

    def mean_gap(x, y):
        return float(
            torch.cat([(a - b).detach().abs().flatten() for a, b in zip(x.parameters(), y.parameters())]).mean()
        )

    # Adam turns rounding noise in near-zero gradients into whole steps for a few weights, so compare on average:
    # the layouts differ by under 5 % of how far training moved the weights (measured: 0.7 %).
    assert mean_gap(plain, nhwc) < 0.05 * mean_gap(plain, start), (mean_gap(plain, nhwc), mean_gap(plain, start))
    assert ev._fast_layout(nhwc, None) == torch.channels_last  # batch norm: NHWC by default
    instance = load_backbone(
        "wmdd_convnet", num_classes=3, in_chans=3, img_size=16, width=8, norm="instance", pretrained=False
    )
    assert ev._fast_layout(instance, None) == torch.contiguous_format  # GroupNorm has no NHWC kernel
