import pytest
import torch
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification

from wmdd_hf import load_backbone, save_backbone
from wmdd_hf.backbones import Backbone


def tiny_hf_resnet(channels=1, labels=10):
    config = ResNetConfig(
        num_channels=channels, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=labels, image_size=28
    )
    return ResNetForImageClassification(config).eval()


def tiny_hf_vit(channels=1, labels=10):
    config = ViTConfig(
        image_size=28,
        patch_size=7,
        num_channels=channels,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=labels,
    )
    return ViTForImageClassification(config).eval()


def _check_features_are_the_head_input(backbone: Backbone, pixels: torch.Tensor):
    logits, features = backbone(pixels)
    assert logits.shape == (len(pixels), backbone.num_classes)
    assert features.shape == (len(pixels), backbone.feature_dim)
    # the captured features ARE what the classifier's last linear layer saw
    torch.testing.assert_close(backbone.head(features), logits, rtol=1e-5, atol=1e-5)


def test_timm_convnet():
    b = load_backbone("wmdd_convnet", num_classes=10, in_chans=1, pretrained=False).eval()
    assert b.source == "timm" and b.spec.channels == 1 and b.spec.size == (28, 28)
    assert b.data_config["mean"] == pytest.approx((0.286,)) and b.data_config["std"] == pytest.approx((0.353,))
    assert len(b.norm_layers()) == 3 and b.norm_kinds() == {"batch"}
    assert b.feature_dim == 64 * 3 * 3
    _check_features_are_the_head_input(b, torch.rand(3, 1, 28, 28))


def test_timm_resnet_with_a_grayscale_stem():
    b = load_backbone("resnet18", num_classes=10, in_chans=1, img_size=32, pretrained=False).eval()
    assert b.spec.channels == 1 and b.spec.size == (32, 32)
    assert len(b.norm_layers()) == 20 and b.feature_dim == 512
    _check_features_are_the_head_input(b, torch.rand(2, 1, 32, 32))
    # the adapter applies the model's own normalisation
    direct = b.model(b.normalize(torch.full((1, 1, 32, 32), 0.5)))
    torch.testing.assert_close(b(torch.full((1, 1, 32, 32), 0.5))[0], direct)


def test_transformers_resnet():
    m = tiny_hf_resnet()
    b = load_backbone(m)
    assert b.source == "transformers" and b.spec.channels == 1
    assert len(b.norm_layers()) == 8 and b.feature_dim == 16
    _check_features_are_the_head_input(b, torch.rand(2, 1, 28, 28))
    torch.testing.assert_close(
        b(torch.rand(2, 1, 28, 28) * 0 + 0.5)[0], m(pixel_values=torch.zeros(2, 1, 28, 28)).logits
    )


def test_transformers_vit_has_layernorms_only():
    b = load_backbone(tiny_hf_vit())
    assert b.norm_kinds() == {"layer"} and len(b.norm_layers()) == 5
    _check_features_are_the_head_input(b, torch.rand(2, 1, 28, 28))


def test_timm_vit():
    b = load_backbone("test_vit", num_classes=10, pretrained=False).eval()
    assert b.norm_kinds() == {"layer"}
    _check_features_are_the_head_input(b, torch.rand(2, 3, *b.spec.size))


@pytest.mark.parametrize("kind", ["timm", "transformers"])
def test_save_load_round_trip_gives_identical_logits(kind, tmp_path):
    names = [f"class {i}" for i in range(10)]
    if kind == "timm":
        b = load_backbone("wmdd_convnet", num_classes=10, in_chans=1, width=8, pretrained=False, class_names=names)
    else:
        b = load_backbone(tiny_hf_resnet(), class_names=names)
    b.eval()
    with torch.no_grad():  # make BN running statistics non-trivial
        for module in b.model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    save_backbone(b, tmp_path / "model", metadata={"test_acc": 0.5})
    loaded = load_backbone(tmp_path / "model").eval()
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x)[0], b(x)[0], rtol=0, atol=0)
    assert loaded.class_names == names
    assert loaded.data_config == b.data_config
    assert loaded.metadata["test_acc"] == 0.5


def test_plain_module_needs_its_input_description():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match="in_chans= and img_size="):
        load_backbone(net)
    b = load_backbone(net, in_chans=1, img_size=2)
    assert b(torch.rand(5, 1, 2, 2))[1].shape == (5, 4)


def test_unknown_name_is_a_clear_error(hub):
    with pytest.raises(ValueError, match="neither a timm model name"):
        load_backbone("no-such-org/no-such-model-xyz")
    assert any("no-such-org/no-such-model-xyz" in path for _, path in hub.requests)  # the real lookup was made


def test_avg_feature_pool_averages_the_last_map_and_keeps_the_logits():
    b = load_backbone("wmdd_convnet", num_classes=10, in_chans=1, pretrained=False, width=8).train()
    x = torch.rand(5, 1, 28, 28)
    running = [m.running_mean.clone() for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    b.set_feature_pool("avg")
    assert b.training and b.feature_dim == 8  # the dry run for the size left mode and running statistics alone
    assert all(
        torch.equal(r, m.running_mean)
        for r, m in zip(running, [m for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    )
    b.eval()
    with torch.no_grad():
        logits, features = b(x)
        fmap = b.model.features(b.normalize(x))  # (5, 8, 3, 3)
        torch.testing.assert_close(features, fmap.mean((2, 3)))
        torch.testing.assert_close(logits, b.model.fc(fmap.flatten(1)))
        b.set_feature_pool("none")
        assert b.feature_dim == 8 * 3 * 3
        torch.testing.assert_close(b(x)[0], logits)


def test_timm_vit_pooled_features_leave_out_the_class_token():
    b = load_backbone("test_vit", num_classes=10, pretrained=False).eval()
    b.set_feature_pool("avg")
    x = torch.rand(2, 3, *b.spec.size)
    with torch.no_grad():
        tokens = b.model.forward_features(b.normalize(x))  # (2, prefix + patches, width)
        assert b.model.num_prefix_tokens >= 1
        torch.testing.assert_close(b(x)[1], tokens[:, b.model.num_prefix_tokens :].mean(1))
        assert b.feature_dim == tokens.shape[-1]


def test_feature_pool_on_a_transformers_model_names_the_fix():
    b = load_backbone(tiny_hf_resnet())
    with pytest.raises(ValueError, match="timm"):
        b.set_feature_pool("avg")
    with pytest.raises(ValueError, match="feature_pool='max'"):
        b.set_feature_pool("max")


def test_a_timm_without_data_config_in_save_for_hf_still_saves_the_normalisation(tmp_path, monkeypatch):
    """timm releases before ``save_for_hf(..., data_config=)`` (a GPU image had one) made saving the teacher fail."""
    import timm

    real = timm.models.save_for_hf

    def older(model, save_directory, model_config=None, model_args=None, safe_serialization=False):
        return real(model, save_directory, model_config=model_config, safe_serialization=safe_serialization)

    monkeypatch.setattr(timm.models, "save_for_hf", older)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False, img_size=20)
    save_backbone(b, tmp_path / "model")
    loaded = load_backbone(tmp_path / "model")
    assert loaded.data_config == b.data_config and loaded.spec.size == (20, 20)


def test_mean_and_std_given_for_a_timm_name_are_the_ones_used(tmp_path):
    """They were silently replaced by the architecture's defaults (the ConvNet's Fashion-MNIST statistics)."""
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False, mean=(0.3,), std=(0.2,))
    assert b.data_config["mean"] == pytest.approx((0.3,)) and b.data_config["std"] == pytest.approx((0.2,))
    x = torch.rand(2, 1, 28, 28)
    plain = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False)
    plain.model.load_state_dict(b.model.state_dict())
    with torch.no_grad():  # the same weights, so the features differ only by the normalisation
        torch.testing.assert_close(b.model((x - 0.3) / 0.2), b(x)[0])
        assert not torch.allclose(plain(x)[0], b(x)[0])
    save_backbone(b, tmp_path / "model")  # and they travel with it
    assert load_backbone(tmp_path / "model").data_config["mean"] == pytest.approx((0.3,))
    with pytest.raises(ValueError, match="3 values: the model reads 1 channel"):
        load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False, mean=(0.3, 0.3, 0.3))
