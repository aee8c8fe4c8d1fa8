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
    args = DistillationArguments(recipe="official")
    c = args.synthesis_config()
    assert (c.loss_scale, c.ce_weight, c.bn_weight, c.iterations, c.learning_rate) == ("official", 1.0, 0.05, 1000, 0.1)
    assert c.augment.scale == (0.08, 1.0) and abs(c.roll - 32 / 224) < 1e-12
    assert args.result_arguments()["recipe"] == "official"


def test_a_recipe_never_overwrites_an_option_the_user_set(caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="wmdd_hf.arguments"):
        args = DistillationArguments(recipe="official", bn_weight=7.0, iterations=5)
    c = args.synthesis_config()
    assert (c.bn_weight, c.iterations) == (7.0, 5)  # the user's
    assert (c.loss_scale, c.ce_weight, c.augment.scale) == ("official", 1.0, (0.08, 1.0))  # the recipe's
    assert "bn_weight=7.0" in caplog.text and "iterations=5" in caplog.text
    real = DistillationArguments(recipe="real_start", images_per_class=3)
    assert (real.init, real.iterations, real.images_per_class) == ("real", 200, 3)
    assert DistillationArguments(recipe="real_start", init="patches").init == "patches"
    sre2l = DistillationArguments(recipe="sre2l")
    assert (sre2l.research.feature_loss, sre2l.research.bn_loss) == ("cross_entropy", "global")
    # a research option the user set is theirs too; the recipe's other research options still apply
    mine = DistillationArguments(recipe="official", research_options={"roll": 0.0, "crop_scale_min": 0.3})
    assert (mine.research.roll, mine.research.crop_scale_min, mine.research.loss_scale) == (0.0, 0.3, "official")
    assert DistillationArguments(recipe="sre2l", research_options={"bn_loss": "none"}).research.bn_loss == "none"


def test_recipes_and_the_cli_flags_meet_as_a_user_would_expect(tmp_path):
    """From the command line, a flag beside --recipe wins too; a recipe file naming an unknown option is refused
    and so is an unknown recipe; the CLI lists the choices of a Literal option."""
    import pytest
    from transformers import HfArgumentParser

    from wmdd_hf.arguments import recipe_names

    assert set(recipe_names()) >= {"official", "real_start", "sre2l"}
    parser = HfArgumentParser(DistillationArguments)
    (args,) = parser.parse_args_into_dataclasses(["--recipe", "official", "--learning_rate", "0.01"])
    assert (args.learning_rate, args.research.loss_scale) == (0.01, "official")
    assert "{noise,real,patches,auto}" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--init", "zeros"])
    (args,) = parser.parse_args_into_dataclasses(["--research_options", '{"loss_scale": "sum", "roll": 0.1}'])
    assert (args.research.loss_scale, args.research.roll, args.synthesis_config().roll) == ("sum", 0.1, 0.1)
    with pytest.raises(ValueError, match="feature_loss='l2'"):
        parser.parse_args_into_dataclasses(["--research_options", '{"feature_loss": "l2"}'])
    with pytest.raises(ValueError, match="not JSON"):
        parser.parse_args_into_dataclasses(["--research_options", "loss_scale=sum"])
    with pytest.raises(ValueError, match="recipe='paper' is not one of"):
        DistillationArguments(recipe="paper")
    import wmdd_hf.arguments as arguments

    original = arguments.load_recipe
    arguments.load_recipe = lambda name: {"bn_wieght": 3.0}
    try:
        with pytest.raises(ValueError, match=r"does not have: \['bn_wieght'\]"):
            DistillationArguments(recipe="official")
    finally:
        arguments.load_recipe = original


def test_the_synthesis_defaults_live_once_in_synthesis_config():
    import dataclasses

    from wmdd_hf.arguments import RESEARCH_FIELDS, SYNTHESIS_FIELD_NAMES
    from wmdd_hf.synthesis import SynthesisConfig

    args, config = DistillationArguments(), SynthesisConfig()
    for f in dataclasses.fields(SynthesisConfig):
        if f.name != "augment":
            name = SYNTHESIS_FIELD_NAMES.get(f.name, f.name)
            source = args.research if name in RESEARCH_FIELDS else args
            assert getattr(source, name) == getattr(config, f.name), f.name
    assert args.synthesis_config() == config
    assert args.synthesis_config().augment == config.augment  # crop_scale_min and jitter


def test_research_options_are_flat_keys_of_the_run_config_and_unknown_ones_get_a_suggestion():
    """run_config.json, wmdd_hf.json and the card keep one flat key per option (so a folder written before the
    options were grouped resumes); a misspelt option names its likely fix and every known one."""
    import pytest

    from wmdd_hf.arguments import RESEARCH_FIELDS

    flat = DistillationArguments(research_options={"barycenter_weights": "uniform"}).result_arguments()
    assert flat["barycenter_weights"] == "uniform" and flat["loss_scale"] == "mean"
    assert set(RESEARCH_FIELDS) <= set(flat) and "research_options" not in flat
    with pytest.raises(ValueError, match=r"'los_scale' \(did you mean 'loss_scale'\?\)"):
        DistillationArguments(research_options={"los_scale": "sum"})


def test_synthesis_options_are_checked_at_construction():
    import pytest

    for kwargs, match in (
        ({"loss_scale": "avg"}, "loss_scale='avg'"),
        ({"feature_norm": "norm", "loss_scale": "sum"}, "needs loss_scale='mean'"),
        ({"crop_milestone": 2.0}, "crop_milestone"),
        ({"statistics_view": "crop"}, "statistics_view='crop'"),
        ({"barycenter_damping": 0.0}, "barycenter_damping"),
    ):
        with pytest.raises(ValueError, match=match):
            DistillationArguments(research_options=kwargs)
    with pytest.raises(ValueError, match="recipe='paper'"):
        DistillationArguments(recipe="paper")
    DistillationArguments(research_options=dict(feature_norm="norm", first_bn_multiplier=10.0, ce_weight=0.5))


def test_research_options_given_flat_still_work_for_one_release_with_a_warning(tmp_path):
    """The form before research_options existed (a keyword, a flag or a config key of its own) is moved into
    research_options with a FutureWarning; a value named in research_options wins over the flat one."""
    import pytest

    from wmdd_hf.cli import parse_args

    with pytest.warns(FutureWarning, match=r"\['loss_scale'\] are research options now"):
        args = DistillationArguments(loss_scale="sum", research_options={"roll": 0.1})
    assert (args.research.loss_scale, args.research.roll) == ("sum", 0.1)
    with pytest.warns(FutureWarning, match="command line"):
        (cli,) = parse_args(
            (DistillationArguments,),
            ["--keep_best", "True", "--crop-milestone", "0.5", "--research_options", '{"keep_best": false}'],
        )
    assert (cli.research.keep_best, cli.research.crop_milestone) == (False, 0.5)
    config = tmp_path / "old.yaml"
    config.write_text("statistics_view: augmented\nbn_weight: 2.0\n")
    with pytest.warns(FutureWarning, match="old.yaml"):
        (old,) = parse_args((DistillationArguments,), ["--config", str(config)])
    assert (old.research.statistics_view, old.bn_weight) == ("augmented", 2.0)
