import torch

from wmdd_hf import AugmentConfig, apply_views, augmented_soft_labels, load_backbone, soft_labels


def test_soft_labels_are_float16_probabilities():
    b = load_backbone("wmdd_convnet", num_classes=4, in_chans=1, width=8, pretrained=False).eval()
    x = torch.rand(7, 1, 28, 28)
    p = soft_labels(b, x, temperature=2.0, batch_size=3)
    assert p.shape == (7, 4) and p.dtype == torch.float16
    torch.testing.assert_close(p.float().sum(1), torch.ones(7), atol=3e-3, rtol=0)
    expected = torch.softmax(b(x)[0] / 2.0, 1)
    torch.testing.assert_close(p.float(), expected, atol=1e-3, rtol=0)


def test_augmented_views_are_reproducible_from_their_parameters():
    b = load_backbone("wmdd_convnet", num_classes=4, in_chans=1, width=8, pretrained=False).eval()
    x = torch.rand(5, 1, 28, 28)
    config = AugmentConfig(scale=(0.4, 1.0))
    views, probs = augmented_soft_labels(b, x, epochs=3, augment=config, seed=9)
    assert views.shape == (3, 5, 5) and probs.shape == (3, 5, 4) and probs.dtype == torch.float16
    again_views, _ = augmented_soft_labels(b, x, epochs=3, augment=config, seed=9)
    torch.testing.assert_close(views, again_views)
    # a student loop rebuilds view (epoch 2, image 4) and gets the stored label back
    rebuilt = apply_views(x[4:5], views[2, 4:5])
    torch.testing.assert_close(torch.softmax(b(rebuilt)[0], 1)[0], probs[2, 4].float(), atol=1e-3, rtol=0)
    assert not torch.equal(views[0], views[1])
