import json

from wmdd_hf import DistillationArguments


def test_token_never_shows(tmp_path):
    args = DistillationArguments(output_dir=str(tmp_path), hub_token="hf_secret_value")
    for text in (repr(args), str(args), json.dumps(args.to_dict()), json.dumps(args.result_arguments())):
        assert "hf_secret_value" not in text
    assert "<HUB_TOKEN>" in repr(args)
    assert args.hub_token == "hf_secret_value"  # still usable


def test_one_rule_for_repo_ids():
    import pytest

    from wmdd_hf.hub import HubError, check_repo_id

    for bad in ("no-slash", "a/b/c", "user/bad--name", "user/..", "-user/name"):
        with pytest.raises(HubError):
            check_repo_id(bad)
        with pytest.raises(ValueError):
            DistillationArguments(hub_dataset_id=bad)
    assert check_repo_id("user/fashion-mnist.wmdd_10") == "user/fashion-mnist.wmdd_10"
    DistillationArguments(hub_dataset_id="user/fashion-mnist.wmdd_10")


def test_official_recipe_sets_the_official_loss_and_schedule():
    args = DistillationArguments(recipe="official", bn_weight=7.0, iterations=5)
    c = args.synthesis_config()
    assert (c.loss_scale, c.ce_weight, c.bn_weight, c.iterations, c.learning_rate) == ("official", 1.0, 0.05, 1000, 0.1)
    assert c.augment.scale == (0.08, 1.0) and abs(c.roll - 32 / 224) < 1e-12
    assert args.result_arguments()["recipe"] == "official"


def test_synthesis_options_are_checked_at_construction():
    import pytest

    for kwargs, match in (
        ({"loss_scale": "avg"}, "loss_scale='avg'"),
        ({"feature_norm": "norm", "loss_scale": "sum"}, "needs loss_scale='mean'"),
        ({"crop_milestone": 2.0}, "crop_milestone"),
        ({"recipe": "paper"}, "recipe='paper'"),
        ({"statistics_view": "crop"}, "statistics_view='crop'"),
    ):
        with pytest.raises(ValueError, match=match):
            DistillationArguments(**kwargs)
    DistillationArguments(loss_scale="mean", feature_norm="norm", first_bn_multiplier=10.0, ce_weight=0.5)
