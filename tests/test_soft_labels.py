import torch

from wmdd_hf import AugmentConfig, apply_views, augmented_soft_labels, load_backbone, soft_labels
from wmdd_hf.augment import apply_cutmix, sample_cutmix
from wmdd_hf.soft_labels import ViewLabels, teacher_outputs


def _net():
    torch.manual_seed(0)
    return load_backbone("wmdd_convnet", num_classes=4, in_chans=1, width=8, pretrained=False).eval()


def test_soft_labels_are_float16_probabilities():
    b = _net()
    x = torch.rand(7, 1, 28, 28)
    p = soft_labels(b, x, temperature=2.0, batch_size=3)
    assert p.shape == (7, 4) and p.dtype == torch.float16
    torch.testing.assert_close(p.float().sum(1), torch.ones(7), atol=3e-3, rtol=0)
    expected = torch.softmax(b(x)[0] / 2.0, 1)
    torch.testing.assert_close(p.float(), expected, atol=1e-3, rtol=0)


def test_teacher_outputs_batch_uint8_pixels_like_floats_in_unit_range():
    b = _net()
    pixels = torch.randint(0, 256, (7, 1, 28, 28), dtype=torch.uint8)
    logits, feats = teacher_outputs(b, pixels, batch_size=3)
    full_logits, full_feats = b(pixels.float() / 255)
    torch.testing.assert_close(logits, full_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(feats, full_feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(teacher_outputs(b, pixels.float() / 255, batch_size=5)[1], full_feats)


def test_cutmix_pastes_the_partners_box_and_nothing_else():
    a, b = torch.zeros(3, 1, 6, 6), torch.ones(3, 1, 6, 6)
    boxes = torch.tensor([[1, 3, 2, 5], [0, 0, 0, 0], [0, 6, 0, 6]])
    out = apply_cutmix(a, b, boxes)
    expected = torch.zeros(3, 1, 6, 6)
    expected[0, :, 1:3, 2:5] = 1
    expected[2] = 1
    torch.testing.assert_close(out, expected)
    partners, boxes = sample_cutmix(8, (6, 6), torch.Generator().manual_seed(1), p=1.0)
    assert sorted(partners.tolist()) == list(range(8)) and (boxes[:, 1] >= boxes[:, 0]).all()
    partners, boxes = sample_cutmix(8, (6, 6), torch.Generator().manual_seed(1), p=0.0)
    assert partners.tolist() == list(range(8)) and (boxes == 0).all()


def test_stored_views_are_reproducible_and_carry_the_teachers_logits():
    b = _net()
    x = torch.rand(5, 1, 28, 28)
    config = AugmentConfig(scale=(0.4, 1.0))
    labels = augmented_soft_labels(b, x, epochs=3, augment=config, seed=9, cutmix_p=1.0, block=5)
    assert labels.views.shape == (3, 5, 5) and labels.logits.shape == (3, 5, 4)
    assert labels.logits.dtype == torch.float16 and labels.partners.shape == (3, 5) and labels.boxes.shape == (3, 5, 4)
    again = augmented_soft_labels(b, x, epochs=3, augment=config, seed=9, cutmix_p=1.0, block=5)
    torch.testing.assert_close(labels.views, again.views)
    assert torch.equal(labels.partners, again.partners) and torch.equal(labels.boxes, again.boxes)
    assert not torch.equal(labels.views[0], labels.views[1])
    # view (epoch 2, image 4), rebuilt by hand: its own crop/flip with its partner's crop/flip pasted into its box
    j = int(labels.partners[2, 4])
    own, other = apply_views(x[4:5], labels.views[2, 4:5]), apply_views(x[j : j + 1], labels.views[2, j : j + 1])
    y0, y1, x0, x1 = labels.boxes[2, 4].tolist()
    by_hand = own.clone()
    by_hand[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]
    rendered = labels.render(x, 2, torch.tensor([4]))
    torch.testing.assert_close(rendered, by_hand)
    torch.testing.assert_close(b(by_hand)[0][0], labels.logits[2, 4].float(), atol=2e-2, rtol=1e-2)


def test_view_labels_survive_the_column_round_trip():
    b = _net()
    x = torch.rand(6, 1, 28, 28)
    labels = augmented_soft_labels(b, x, epochs=2, augment=AugmentConfig(), seed=3, cutmix_p=1.0, block=4)
    back = ViewLabels.from_columns(labels.to_columns(), num_images=6)
    for name in ("views", "partners", "boxes", "logits"):
        assert torch.equal(getattr(back, name), getattr(labels, name)), name
