"""DD-Ranking scores on hand-made numbers (expected values worked out by hand, four decimals)."""

import pytest

from wmdd_hf.scores import augmentation_robust_score, label_robust_score, scores


def test_label_robust_score_by_hand():
    # IOR = 0.80 - 0.75 = 0.05; HLR = 0.92 - 0.70 = 0.22; a = 0.025 - 0.11 = -0.085
    # (e^-0.085 - e^-1) / (e - e^-1) = (0.918512 - 0.367879) / 2.350402 = 0.23427
    s = scores(acc_soft=0.80, acc_random_soft=0.75, acc_hard=0.70, acc_full_hard=0.92)
    assert s["ior"] == pytest.approx(0.05) and s["hlr"] == pytest.approx(0.22)
    assert s["lrs"] == pytest.approx(0.23427, abs=1e-4)
    assert s["ars"] is None  # no runs without augmentation


def test_score_ends():
    assert label_robust_score(ior=1.0, hlr=-1.0) == pytest.approx(1.0)  # a = 1
    assert label_robust_score(ior=-1.0, hlr=1.0) == pytest.approx(0.0)  # a = -1
    assert label_robust_score(0.0, 0.0) == pytest.approx(0.26894, abs=1e-4)  # (1 - e^-1) / (e - e^-1)


def test_augmentation_robust_score_by_hand():
    # b = 0.5 * (0.80 - 0.75) + 0.5 * (0.60 - 0.62) = 0.015; (e^0.015 - e^-1) / (e - e^-1) = 0.27537
    assert augmentation_robust_score(0.80, 0.75, 0.60, 0.62) == pytest.approx(0.27537, abs=1e-4)
    s = scores(0.80, 0.75, acc_no_aug=0.60, acc_random_no_aug=0.62)
    assert s["ars"] == pytest.approx(0.27537, abs=1e-4) and s["lrs"] is None


def test_colour_spread_in_grey_levels():
    import torch

    from wmdd_hf.scores import colour_spread

    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    x[:, 0], x[:, 1], x[:, 2] = 10, 20, 5  # |10 - 20| + |20 - 5| = 25 everywhere
    assert colour_spread(x) == pytest.approx(25.0)
    x[1] = 7  # grey: 0
    assert colour_spread(x) == pytest.approx(12.5)
    assert colour_spread(torch.full((1, 1, 4, 4), 9, dtype=torch.uint8)) == 0.0
