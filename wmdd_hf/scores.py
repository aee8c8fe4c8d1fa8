"""DD-Ranking scores (Li et al., "DD-Ranking: Rethinking the Evaluation of Dataset Distillation", arXiv 2505.13300).

A distilled set is judged by what its *images* add over a random real subset of the same size under the same
protocol, not by its raw accuracy (soft labels alone make random subsets strong). Accuracies are fractions in [0, 1].

* IOR (improvement over random) = acc(method, soft) - acc(random subset, soft), same protocol.
* HLR (hard-label recovery) = acc(full data, hard labels) - acc(method, hard labels).
* LRS (label-robust score) = (e^a - e^-1) / (e - e^-1) with a = 0.5 * IOR - 0.5 * HLR: 0 at a = -1, about 0.269
  at a = 0 (the images add nothing and lose nothing), 1 at a = 1.
* Colour spread = mean(|R - G| + |G - B|) over the pixels of a set, in grey levels (0..510): 0 for grey images,
  so on grey data it measures how far synthesis drifted into colour (:func:`colour_spread`).
* ARS (augmentation-robust score) = (e^b - e^-1) / (e - e^-1) with
  b = 0.5 * (acc(method, aug) - acc(random, aug)) + 0.5 * (acc(method, no aug) - acc(random, no aug)).
"""

from __future__ import annotations

import math


def _squash(x: float) -> float:
    """``(e^x - e^-1) / (e - e^-1)``: maps x in [-1, 1] to [0, 1], increasing."""
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def improvement_over_random(acc_method: float, acc_random: float) -> float:
    return acc_method - acc_random


def hard_label_recovery(acc_full_hard: float, acc_method_hard: float) -> float:
    return acc_full_hard - acc_method_hard


def label_robust_score(ior: float, hlr: float, weight: float = 0.5) -> float:
    return _squash(weight * ior - (1 - weight) * hlr)


def augmentation_robust_score(
    acc_method_aug: float,
    acc_random_aug: float,
    acc_method_no_aug: float,
    acc_random_no_aug: float,
    weight: float = 0.5,
) -> float:
    return _squash(weight * (acc_method_aug - acc_random_aug) + (1 - weight) * (acc_method_no_aug - acc_random_no_aug))


def scores(
    acc_soft: float | None,
    acc_random_soft: float | None,
    acc_hard: float | None = None,
    acc_full_hard: float | None = None,
    acc_no_aug: float | None = None,
    acc_random_no_aug: float | None = None,
) -> dict[str, float | None]:
    """``{"ior", "hlr", "lrs", "ars"}`` for one method row; a score whose inputs are missing is None."""
    ior = improvement_over_random(acc_soft, acc_random_soft) if None not in (acc_soft, acc_random_soft) else None
    hlr = hard_label_recovery(acc_full_hard, acc_hard) if None not in (acc_full_hard, acc_hard) else None
    lrs = label_robust_score(ior, hlr) if None not in (ior, hlr) else None
    inputs = (acc_soft, acc_random_soft, acc_no_aug, acc_random_no_aug)
    ars = augmentation_robust_score(*inputs) if None not in inputs else None
    return {"ior": ior, "hlr": hlr, "lrs": lrs, "ars": ars}


def colour_spread(images) -> float:
    """``uint8`` images ``(N, C, H, W)`` -> mean over pixels of ``|R - G| + |G - B|`` in grey levels; 0 for
    1-channel images."""
    import torch

    images = torch.as_tensor(images)
    if images.shape[1] == 1:
        return 0.0
    x = images[:, :3].to(torch.int16)
    return float(((x[:, 0] - x[:, 1]).abs() + (x[:, 1] - x[:, 2]).abs()).float().mean())
