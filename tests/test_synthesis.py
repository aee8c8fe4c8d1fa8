import dataclasses
import math

import pytest
import torch

from wmdd_hf import load_backbone
from wmdd_hf.statistics import NormMoments
from wmdd_hf.synthesis import NonFiniteLossError, NormTargets, SynthesisConfig, synthesize_batch


def weighted_class_moments(x: torch.Tensor, slots: torch.Tensor, weights: torch.Tensor, groups: int, dim: int):
    """The reference, one layer at a time: the weighted per-class ``(mean (G, C), var (G, C))`` of a layer input
    ``x`` (``slots (B,)``: class slot of each image; ``weights (B,)``: summing to 1 per class), with
    ``var = sum_j w_j (within-image variance_j + (mean_j - mean)^2)``."""
    reduce = tuple(d for d in range(1, x.ndim) if d != dim % x.ndim)
    var_i, mean_i = torch.var_mean(x, dim=reduce, correction=0)
    w = weights.to(x.dtype)[:, None]
    mean = torch.zeros(groups, mean_i.shape[1], dtype=x.dtype).index_add(0, slots, w * mean_i)
    var = torch.zeros_like(mean).index_add(0, slots, w * (var_i + (mean_i - mean[slots]).pow(2)))
    return mean, var


def test_the_reference_class_moments_match_the_definition():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    slots = torch.tensor([0, 0, 1, 1, 1])
    w = torch.tensor([0.25, 0.75, 0.2, 0.3, 0.5], dtype=torch.float64)
    mean, var = weighted_class_moments(x, slots, w, 2, dim=1)
    for g, idx in ((0, [0, 1]), (1, [2, 3, 4])):
        xs, ws = x[idx], w[idx]
        # a weighted mixture of the images' pixel distributions
        mu = (ws[:, None] * xs.mean((2, 3))).sum(0)
        second = (ws[:, None] * (xs**2).mean((2, 3))).sum(0)
        torch.testing.assert_close(mean[g], mu)
        torch.testing.assert_close(var[g], second - mu**2)


def test_uniform_weights_give_the_pooled_batch_statistics():
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    mean, var = weighted_class_moments(
        x, torch.zeros(4, dtype=torch.long), torch.full((4,), 0.25, dtype=torch.float64), 1, 1
    )
    flat = x.transpose(0, 1).reshape(2, -1)
    torch.testing.assert_close(mean[0], flat.mean(1))
    torch.testing.assert_close(var[0], flat.var(1, unbiased=False))


def _setup(num_classes=2, m=3):
    torch.manual_seed(0)
    teacher = load_backbone(
        "wmdd_convnet", num_classes=num_classes, in_chans=1, width=8, depth=2, pretrained=False
    ).freeze()
    with torch.no_grad():
        real = torch.rand(20, 1, 28, 28)
        _, feats = teacher(real)
    labels = torch.arange(num_classes).repeat_interleave(m)
    points = feats[: len(labels)]
    weights = torch.rand(len(labels)) + 0.5
    channels = [mod.num_features for _, mod in teacher.norm_layers()]
    norms = {
        name: NormMoments(
            torch.full((num_classes,), 100.0, dtype=torch.float64),
            torch.zeros(num_classes, c, dtype=torch.float64),
            torch.full((num_classes, c), 100.0, dtype=torch.float64),
        )
        for (name, _), c in zip(teacher.norm_layers(), channels)
    }
    return teacher, labels, points, weights, norms


@pytest.mark.parametrize("feature_loss", ["wasserstein", "cross_entropy"])
@pytest.mark.parametrize("bn_loss", ["per_class", "global", "none"])
def test_losses_decrease_and_pixels_stay_valid(feature_loss, bn_loss):
    teacher, labels, points, weights, norms = _setup()
    config = SynthesisConfig(
        iterations=40, learning_rate=0.05, bn_weight=1.0, feature_loss=feature_loss, bn_loss=bn_loss, log_every=39
    )
    targets = NormTargets.from_moments(norms, bn_loss) if bn_loss != "none" else None
    init = torch.rand(len(labels), 1, 28, 28)
    params_before = [p.clone() for p in teacher.parameters()]
    images, history = synthesize_batch(
        teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(0)
    )
    assert images.shape == init.shape and images.min() >= 0 and images.max() <= 1
    assert history[-1]["loss"] < history[0]["loss"]
    if bn_loss != "none":
        assert history[-1]["bn_loss"] < history[0]["bn_loss"]
    else:  # no statistic term: the loss is the feature term alone
        assert all(r["loss"] == pytest.approx(r["feature_loss"], rel=1e-6) for r in history)
    assert all(torch.equal(a, b) for a, b in zip(params_before, teacher.parameters()))
    assert not teacher.training


def test_lambda_zero_removes_the_statistics_term_and_lambda_one_does_not():
    teacher, labels, points, weights, norms = _setup()
    targets = NormTargets.from_moments(norms, "per_class")
    init = torch.rand(len(labels), 1, 28, 28)

    def run(bn_loss, bn_weight):
        config = SynthesisConfig(iterations=10, learning_rate=0.05, bn_weight=bn_weight, bn_loss=bn_loss, log_every=9)
        t = targets if bn_loss != "none" else None
        return synthesize_batch(teacher, init, labels, points, weights, t, config, torch.Generator().manual_seed(0))[0]

    without = run("none", 0.0)
    torch.testing.assert_close(run("per_class", 0.0), without, atol=1e-6, rtol=0)
    assert (run("per_class", 1.0) - without).abs().max() > 1e-3


def test_same_generator_same_images():
    teacher, labels, points, weights, norms = _setup()
    config = SynthesisConfig(iterations=5)
    targets = NormTargets.from_moments(norms, "per_class")
    init = torch.rand(len(labels), 1, 28, 28)
    a, _ = synthesize_batch(teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(3))
    b, _ = synthesize_batch(teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_unknown_switches():
    with pytest.raises(ValueError, match="feature_loss"):
        SynthesisConfig(feature_loss="mmd")
    with pytest.raises(ValueError, match="bn_loss"):
        SynthesisConfig(bn_loss="per_batch")


def test_mean_scale_terms_by_hand():
    """loss_scale='mean': the feature term is the mean of per-image squared distances (or of distances), the
    statistic term the mean over layers of per-class norms; checked against a direct computation."""
    from wmdd_hf.synthesis import _feature_term

    feats = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    points = torch.zeros(2, 2)
    logits, labels = torch.zeros(2, 3), torch.tensor([0, 1])
    mean_sq = SynthesisConfig(loss_scale="mean", feature_norm="squared")
    assert float(_feature_term(mean_sq, logits, feats, labels, points)) == pytest.approx((25 + 1) / 2)
    mean_norm = SynthesisConfig(loss_scale="mean", feature_norm="norm")
    assert float(_feature_term(mean_norm, logits, feats, labels, points)) == pytest.approx((5 + 1) / 2)
    frob = SynthesisConfig(loss_scale="mean", feature_norm="frobenius")
    assert float(_feature_term(frob, logits, feats, labels, points)) == pytest.approx(26**0.5)
    summed = SynthesisConfig(loss_scale="sum")
    assert float(_feature_term(summed, logits, feats, labels, points)) == pytest.approx(26)
    official = SynthesisConfig(loss_scale="official", ce_weight=1.0)
    assert float(_feature_term(official, logits, feats, labels, points)) == pytest.approx(26**0.5 + math.log(3))
    with_ce = SynthesisConfig(loss_scale="mean", ce_weight=2.0)
    assert float(_feature_term(with_ce, logits, feats, labels, points)) == pytest.approx(13 + 2 * math.log(3))


def test_bad_scale_combinations_are_refused():
    with pytest.raises(ValueError, match="needs loss_scale='mean'"):
        SynthesisConfig(feature_norm="norm", loss_scale="sum")
    with pytest.raises(ValueError, match="first_bn_multiplier needs"):
        SynthesisConfig(first_bn_multiplier=10.0, loss_scale="sum")
    with pytest.raises(ValueError, match="loss_scale='avg'"):
        SynthesisConfig(loss_scale="avg")
    with pytest.raises(ValueError, match="crop_milestone"):
        SynthesisConfig(crop_milestone=1.5)


def test_crop_curriculum_goes_from_whole_images_to_small_crops():
    from wmdd_hf.augment import AugmentConfig

    c = SynthesisConfig(iterations=100, crop_milestone=0.5, augment=AugmentConfig(scale=(0.08, 1.0)))
    lows = [c.augment_at(it).scale[0] for it in (0, 25, 49, 50, 99)]
    assert lows[0] == pytest.approx(1.0) and lows[1] == pytest.approx(0.08 + 0.92 * 0.5)
    assert lows[0] > lows[1] > lows[2] > lows[3] == lows[4] == pytest.approx(0.08)
    assert SynthesisConfig().augment_at(10) == SynthesisConfig().augment


def test_mean_scale_runs_logs_the_ratio_and_keep_best_returns_the_best_iterate():
    teacher, labels, points, weights, norms = _setup()
    targets = NormTargets.from_moments(norms, "per_class")
    init = torch.rand(len(labels), 1, 28, 28)
    config = SynthesisConfig(
        iterations=12,
        learning_rate=0.05,
        bn_weight=1.0,
        loss_scale="mean",
        first_bn_multiplier=10.0,
        roll=2,
        log_every=1,
        keep_best=True,
    )
    images, history = synthesize_batch(
        teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(0)
    )
    assert all(r["bn_to_feature"] == pytest.approx(r["bn_loss"] / r["feature_loss"], rel=1e-5) for r in history)
    assert history[-1]["loss"] < history[0]["loss"]
    # keep_best: the returned pixels are not the last iterate when an earlier one had a lower loss
    losses = [r["loss"] for r in history]
    last, _ = synthesize_batch(
        teacher,
        init,
        labels,
        points,
        weights,
        targets,
        dataclasses.replace(config, keep_best=False),
        torch.Generator().manual_seed(0),
    )
    if min(losses) < losses[-1]:
        assert not torch.equal(images, last)
    else:
        assert torch.equal(images, last)


def test_bf16_forward_keeps_float32_moments_and_losses():
    teacher, labels, points, weights, norms = _setup()
    targets = NormTargets.from_moments(norms, "per_class")
    init = torch.rand(len(labels), 1, 28, 28)
    seen = []
    handle = teacher.norm_layers()[0][1].register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))

    def run(**kw):
        config = SynthesisConfig(iterations=2, learning_rate=0.05, bn_weight=1.0, log_every=1, **kw)
        return synthesize_batch(
            teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(0)
        )

    _, fp32 = run()
    images, bf16 = run(precision="bf16", channels_last=True)
    handle.remove()
    assert torch.bfloat16 in seen  # the forward really ran in bf16 ...
    for a, b in zip(fp32, bf16):  # ... and the float32 losses agree to bf16 accuracy
        assert b["feature_loss"] == pytest.approx(a["feature_loss"], rel=0.05)
        assert b["bn_loss"] == pytest.approx(a["bn_loss"], rel=0.05)
    assert images.dtype == torch.float32
    with pytest.raises(ValueError, match="precision='fp16'"):
        SynthesisConfig(precision="fp16")


def test_clean_feature_view_brings_the_un_augmented_images_to_their_points():
    """With feature_view='clean' the feature term is measured on the un-augmented images (what the points are
    features of): after the same steps they end closer to their points than with the augmented view's term."""
    from wmdd_hf.augment import AugmentConfig

    teacher, labels, points, weights, norms = _setup()
    init = torch.rand(len(labels), 1, 28, 28)

    def distance(view):
        config = SynthesisConfig(
            iterations=40,
            learning_rate=0.05,
            bn_loss="none",
            loss_scale="sum",
            feature_view=view,
            log_every=39,
            augment=AugmentConfig(scale=(0.3, 1.0)),
        )
        images, history = synthesize_batch(
            teacher, init, labels, points, weights, None, config, torch.Generator().manual_seed(0)
        )
        with torch.no_grad():
            return float((teacher(images)[1] - points).pow(2).sum()), history

    clean, history = distance("clean")
    augmented, _ = distance("augmented")
    assert clean < augmented
    assert history[-1]["feature_loss"] == pytest.approx(clean, rel=0.05)  # the logged term is the clean distance
    with pytest.raises(ValueError, match="feature_view='blurred'"):
        SynthesisConfig(feature_view="blurred")


def test_image_priors_by_hand_and_they_smooth_the_images():
    from wmdd_hf.synthesis import image_prior

    x = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])  # down: |1-0|, |1-1| -> 0.5; right: |1-0|, |1-1| -> 0.5
    torch.testing.assert_close(image_prior(x, 1.0, 0.0), torch.tensor(1.0))
    torch.testing.assert_close(image_prior(x, 0.0, 2.0), torch.tensor(2 * 0.75))
    teacher, labels, points, weights, norms = _setup()
    targets = NormTargets.from_moments(norms, "per_class")
    init = torch.rand(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(0))

    def run(tv):
        config = SynthesisConfig(iterations=20, learning_rate=0.05, tv_weight=tv)
        return synthesize_batch(
            teacher, init, labels, points, weights, targets, config, torch.Generator().manual_seed(0)
        )

    plain, smooth = run(0.0)[0], run(50.0)[0]
    assert image_prior(smooth, 1.0, 0.0) < 0.8 * image_prior(plain, 1.0, 0.0)
    with pytest.raises(ValueError, match="l2_weight and input_weight must be >= 0"):
        SynthesisConfig(l2_weight=-1.0)


@pytest.mark.parametrize("loss_scale", ["sum", "mean", "official"])
@pytest.mark.parametrize("bn_loss", ["per_class", "global"])
def test_statistics_term_of_all_layers_at_once_equals_the_layer_by_layer_formula(loss_scale, bn_loss):
    """The term is built from every layer's per-sample moments at once (one matrix product); here it is computed
    layer by layer from the captured layer inputs, as the module docstring writes it, value and pixel gradient."""
    from wmdd_hf.synthesis import NormStatisticsLoss

    teacher, labels, points, weights, norms = _setup(num_classes=3, m=2)
    g = torch.Generator().manual_seed(3)
    for m in norms.values():  # targets that differ by class and channel
        m.mean.copy_(torch.randn(m.mean.shape, generator=g, dtype=torch.float64))
        m.m2.copy_(100 * torch.rand(m.m2.shape, generator=g, dtype=torch.float64) + 10)
    targets = NormTargets.from_moments(norms, bn_loss)
    config = SynthesisConfig(
        bn_loss=bn_loss, loss_scale=loss_scale, first_bn_multiplier=1.0 if loss_scale == "sum" else 3.0
    )
    classes, slots = labels.unique(sorted=True, return_inverse=True)
    w = weights / torch.zeros(len(classes)).index_add(0, slots, weights)[slots]
    pixels = torch.rand(len(labels), 1, 28, 28, requires_grad=True)
    with NormStatisticsLoss(teacher, targets, classes, slots, w, config) as term:
        teacher(pixels)
        fast = term.value(pixels.device)
    (fast_grad,) = torch.autograd.grad(fast, pixels)

    inputs = []
    handles = [mod.register_forward_pre_hook(lambda mod, a: inputs.append(a[0])) for _, mod in teacher.norm_layers()]
    teacher(pixels)
    for h in handles:
        h.remove()
    per_layer = []
    for i, ((name, _), x) in enumerate(zip(teacher.norm_layers(), inputs)):
        if bn_loss == "per_class":
            mean, var = weighted_class_moments(x, slots, w, len(classes), 1)
            t_mean, t_var = targets.mean[name][classes], targets.var[name][classes]
        else:
            flat = x.transpose(0, 1).reshape(x.shape[1], -1)
            mean, var = flat.mean(1)[None], flat.var(1, unbiased=False)[None]
            t_mean, t_var = targets.mean[name], targets.var[name]
        if loss_scale == "sum":
            per_layer.append((mean - t_mean).pow(2).sum() + (var - t_var).pow(2).sum())
        else:
            layer = ((mean - t_mean).norm(dim=1) + (var - t_var).norm(dim=1)).mean()
            per_layer.append(layer * (3.0 if i == 0 else 1.0))
    slow = torch.stack(per_layer).mean() if loss_scale == "mean" else torch.stack(per_layer).sum()
    (slow_grad,) = torch.autograd.grad(slow, pixels)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("bad", [0, 2])
def test_a_non_finite_loss_stops_the_batch_with_its_first_bad_iteration(bad):
    """Finiteness is read on the host at logging steps only; the iteration reported is still the first bad one:
    a NaN barycenter point (iteration 0), or a loss that turns NaN at iteration 2, before the logging step 4."""
    teacher, labels, points, weights, _ = _setup()
    points = points.clone()
    if bad == 0:
        points[0, 0] = float("nan")

    def loss_fn(terms):
        return terms.feature_loss * (float("nan") if bad and terms.iteration == bad else 1.0)

    with pytest.raises(NonFiniteLossError, match=f"iteration {bad}"):
        synthesize_batch(
            teacher,
            torch.rand(len(labels), 1, 28, 28),
            labels,
            points,
            weights,
            None,
            SynthesisConfig(iterations=6, bn_loss="none", log_every=4),
            loss_fn=loss_fn,
        )


def _grey_rgb_setup(num_classes=2, m=4, size=16):
    """A 3-channel teacher, grey real images stored as RGB, and their per-class input statistics."""
    from wmdd_hf.statistics import collect_class_statistics

    torch.manual_seed(0)
    teacher = load_backbone(
        "wmdd_convnet", num_classes=num_classes, in_chans=3, img_size=size, width=8, depth=2, pretrained=False
    ).freeze()
    grey = (torch.rand(40, 1, size, size) * 255).to(torch.uint8)
    real_labels = torch.arange(40) % num_classes
    real = grey.expand(-1, 3, -1, -1).contiguous()
    stats = collect_class_statistics(teacher, [(real, real_labels, torch.arange(40))], num_classes)
    labels = torch.arange(num_classes).repeat_interleave(m)
    with torch.no_grad():
        points = teacher(real[: len(labels)].float() / 255)[1]
    return teacher, stats, labels, points


def test_input_statistics_are_each_classs_channel_means_and_covariance_by_hand():
    from wmdd_hf.statistics import collect_class_statistics, input_channels

    x = torch.tensor([[[[0.2]], [[0.5]], [[0.9]]]])  # one pixel, R G B
    torch.testing.assert_close(input_channels(x).flatten(), torch.tensor([0.2, 0.5, 0.9, -0.3, -0.7, -0.4]))
    assert input_channels(torch.rand(2, 1, 4, 4)).shape == (2, 1, 4, 4)  # grey: the pixels themselves
    teacher = load_backbone("wmdd_convnet", num_classes=2, in_chans=3, img_size=8, width=8, depth=2, pretrained=False)
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 1] * 5)
    batches = [(images[:4], labels[:4], torch.arange(4)), (images[4:], labels[4:], torch.arange(4, 10))]
    stats = collect_class_statistics(teacher.eval(), batches, 2)
    for k in (0, 1):
        pixels = images[labels == k].double().div(255).permute(1, 0, 2, 3).reshape(3, -1)  # (C, pixels)
        mean, cov = pixels.mean(1), torch.cov(pixels, correction=0)
        var = stats.inputs.var[k]
        torch.testing.assert_close(stats.inputs.mean[k, :3], mean)
        torch.testing.assert_close(var[:3], cov.diagonal())
        # the differences' variances give the off-diagonal: cov_ij = (var_i + var_j - var(x_i - x_j)) / 2
        torch.testing.assert_close((var[0] + var[1] - var[3]) / 2, cov[0, 1])
        torch.testing.assert_close((var[1] + var[2] - var[5]) / 2, cov[1, 2])
    again = type(stats).from_state(stats.to_state())  # saved and read back
    torch.testing.assert_close(again.inputs.m2, stats.inputs.m2)


def test_the_input_statistics_term_keeps_grey_data_grey():
    from wmdd_hf.scores import colour_spread

    teacher, stats, labels, points = _grey_rgb_setup()
    targets = NormTargets.from_moments(stats.norms, "per_class", stats.inputs)
    start = torch.rand(len(labels), 1, 16, 16, generator=torch.Generator().manual_seed(1)).expand(-1, 3, -1, -1)

    def run(weight):
        config = SynthesisConfig(iterations=30, learning_rate=0.05, input_weight=weight)
        images, _ = synthesize_batch(
            teacher,
            start.clone(),
            labels,
            points,
            torch.ones(len(labels)),
            targets,
            config,
            torch.Generator().manual_seed(0),
        )
        return colour_spread((images * 255).round().to(torch.uint8))

    assert colour_spread((start * 255).round().to(torch.uint8)) == 0
    free, held = run(0.0), run(1000.0)
    assert free > 20, "without the term, per-channel Adam steps should drift the channels apart"
    assert held < 0.6 * free


def test_input_statistics_without_them_in_the_pass_are_refused_by_name():
    teacher, stats, labels, points = _grey_rgb_setup()
    targets = NormTargets.from_moments(stats.norms, "per_class")  # a pass saved before inputs were collected
    config = SynthesisConfig(iterations=2, input_weight=1.0)
    with pytest.raises(ValueError, match="input_weight > 0 needs the real input statistics"):
        synthesize_batch(
            teacher, torch.rand(len(labels), 3, 16, 16), labels, points, torch.ones(len(labels)), targets, config
        )
