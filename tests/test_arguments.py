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
