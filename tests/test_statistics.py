import torch

from wmdd_hf import load_backbone
from wmdd_hf.statistics import NormMoments, batch_class_moments, collect_class_statistics


def _data(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    return images, labels


def _batches(images, labels, size):
    return [
        (images[s : s + size], labels[s : s + size], torch.arange(s, min(s + size, len(images))))
        for s in range(0, len(images), size)
    ]


def test_one_pass_equals_a_direct_computation():
    torch.manual_seed(0)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    images, labels = _data()
    stats = collect_class_statistics(b, _batches(images, labels, 16), num_classes=3)
    inputs = {}
    handles = [
        m.register_forward_hook(lambda mod, a, o, n=n: inputs.__setitem__(n, a[0].double())) for n, m in b.norm_layers()
    ]
    with torch.no_grad():
        _, feats = b(images.float() / 255)
    for h in handles:
        h.remove()
    for name, x in inputs.items():
        for k in range(3):
            xk = x[labels == k]  # (n_k, C, H, W)
            per_channel = xk.transpose(0, 1).reshape(xk.shape[1], -1)
            torch.testing.assert_close(stats.norms[name].mean[k], per_channel.mean(1), rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(
                stats.norms[name].var[k], per_channel.var(1, unbiased=False), rtol=1e-5, atol=1e-7
            )
    for k in range(3):
        torch.testing.assert_close(stats.features[k], feats[labels == k].float(), rtol=1e-5, atol=1e-6)
        assert stats.rows[k].tolist() == torch.nonzero(labels == k).flatten().tolist()
    assert stats.counts.tolist() == [30.0, 30.0, 30.0]


def test_pooled_variance_is_not_the_average_of_batch_variances():
    # two batches of one class with different means: pooled variance > mean of per-batch variances
    a = torch.zeros(4, 2, 1, 1)
    b = torch.ones(4, 2, 1, 1) * 2
    labels = torch.zeros(4, dtype=torch.long)
    merged = batch_class_moments(a, labels, 1, 1).merge(batch_class_moments(b, labels, 1, 1))
    torch.testing.assert_close(merged.var, torch.ones(1, 2, dtype=torch.float64))


def test_merging_shards_equals_the_whole():
    torch.manual_seed(1)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    images, labels = _data(seed=3)
    whole = collect_class_statistics(b, _batches(images, labels, 30), num_classes=3)
    first = collect_class_statistics(b, _batches(images[:50], labels[:50], 30), num_classes=3)
    rest = _batches(images[50:], labels[50:], 30)
    rest = [(x, y, r + 50) for x, y, r in rest]
    second = collect_class_statistics(b, rest, num_classes=3)
    merged = first.merge(second)
    for name in whole.norms:
        torch.testing.assert_close(merged.norms[name].mean, whole.norms[name].mean, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(merged.norms[name].m2, whole.norms[name].m2, rtol=1e-9, atol=1e-9)
    for k in range(3):
        torch.testing.assert_close(merged.features[k], whole.features[k])
        assert merged.rows[k].tolist() == whole.rows[k].tolist()


def test_feature_cap_keeps_a_seeded_subset():
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    images, labels = _data()
    one = collect_class_statistics(b, _batches(images, labels, 16), num_classes=3, max_features_per_class=7, seed=5)
    two = collect_class_statistics(b, _batches(images, labels, 16), num_classes=3, max_features_per_class=7, seed=5)
    for k in range(3):
        assert one.features[k].shape == (7, b.feature_dim)
        assert one.rows[k].tolist() == two.rows[k].tolist()
        assert all(int(labels[r]) == k for r in one.rows[k])
    # the moments still cover every example
    assert one.counts.tolist() == [30.0, 30.0, 30.0]


def test_layernorm_statistics_use_the_last_dimension():
    x = torch.randn(6, 5, 4)  # (B, tokens, C)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    m = batch_class_moments(x, labels, 2, dim=-1)
    torch.testing.assert_close(m.mean[0], x[:3].reshape(-1, 4).mean(0).double(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(m.var[1], x[3:].reshape(-1, 4).var(0, unbiased=False).double(), rtol=1e-6, atol=1e-7)
    assert isinstance(m, NormMoments)


def test_feature_cap_keeps_the_same_rows_whatever_the_batching_and_the_process_count():
    torch.manual_seed(0)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    images, labels = _data(n=300)
    full = collect_class_statistics(b, _batches(images, labels, 50), num_classes=3)
    one = collect_class_statistics(b, _batches(images, labels, 50), 3, max_features_per_class=20, seed=5)
    shuffled = list(reversed(_batches(images, labels, 7)))
    other = collect_class_statistics(b, shuffled, 3, max_features_per_class=20, seed=5)
    halves = [
        collect_class_statistics(b, _batches(images, labels, 50)[i::2], 3, max_features_per_class=20, seed=5)
        for i in (0, 1)
    ]  # two "processes", each with its own share of the batches
    merged = halves[0].merge(halves[1]).capped(20, seed=5)
    another_seed = collect_class_statistics(b, _batches(images, labels, 50), 3, max_features_per_class=20, seed=6)
    for k in range(3):
        rows = one.rows[k]
        assert len(rows) == 20 and len(set(rows.tolist())) == 20
        assert torch.equal(other.rows[k], rows) and torch.equal(merged.rows[k], rows)
        assert not torch.equal(another_seed.rows[k], rows)
        # every kept feature is that row's feature, and owns its memory (no view of a whole batch)
        position = {int(r): i for i, r in enumerate(full.rows[k])}
        torch.testing.assert_close(one.features[k], full.features[k][[position[int(r)] for r in rows]])
        assert one.features[k].untyped_storage().nbytes() == one.features[k].numel() * 4


def test_fast_moments_match_var_mean_and_fall_back_when_the_mean_dominates():
    from wmdd_hf.statistics import per_sample_moments

    g = torch.Generator().manual_seed(0)
    for offset in (0.5, 1e4):  # a spread comparable to the mean, then a mean that dwarfs it
        x = torch.randn(6, 5, 7, 7, generator=g) + offset
        mean, m2, count = per_sample_moments(x, 1)
        var, ref_mean = torch.var_mean(x.double(), dim=(2, 3), correction=0)
        assert count == 49
        torch.testing.assert_close(mean.double(), ref_mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close((m2 / count).double(), var, rtol=1e-4, atol=1e-6)


def test_fast_moments_have_the_gradients_of_var_mean():
    from wmdd_hf.statistics import per_sample_moments

    x = (torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1)) + 0.3).requires_grad_(True)
    mean, m2, count = per_sample_moments(x, 1)
    (mean.pow(2).sum() + (m2 / count).sum()).backward()
    fast = x.grad.clone()
    x.grad = None
    var, ref = torch.var_mean(x, dim=(2, 3), correction=0)
    (ref.pow(2).sum() + var.sum()).backward()
    torch.testing.assert_close(fast, x.grad, rtol=1e-4, atol=1e-6)


def test_augmented_statistics_see_one_view_per_row_whatever_the_batching():
    from wmdd_hf.augment import AugmentConfig, apply_views
    from wmdd_hf.statistics import row_views

    torch.manual_seed(0)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    images, labels = _data(n=60)
    views = AugmentConfig(scale=(0.5, 1.0), flip=True)
    one = collect_class_statistics(b, _batches(images, labels, 16), 3, seed=3, views=views)
    other = collect_class_statistics(b, list(reversed(_batches(images, labels, 7))), 3, seed=3, views=views)
    clean = collect_class_statistics(b, _batches(images, labels, 16), 3, seed=3)
    # the expected features, computed directly: each row through the view drawn from (seed, row) alone
    params = row_views(torch.arange(60), views, seed=3)
    assert torch.equal(params[5], row_views(torch.tensor([5]), views, seed=3)[0])
    assert not torch.equal(params, row_views(torch.arange(60), views, seed=4))
    with torch.no_grad():
        _, feats = b(apply_views(images.float() / 255, params))
    for k in range(3):
        order = torch.argsort(other.rows[k])
        torch.testing.assert_close(one.features[k], feats[labels == k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(other.features[k][order], one.features[k], rtol=1e-4, atol=1e-5)
        assert not torch.allclose(clean.features[k], one.features[k])
    for name in one.norms:
        torch.testing.assert_close(other.norms[name].mean, one.norms[name].mean, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(clean.norms[name].mean, one.norms[name].mean)
