"""Pictures a user would rather look at than read: the synthetic set as a grid, and the barycenters in feature space."""

from __future__ import annotations

import os

import numpy as np
import torch


def save_image_grid(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    path: str | os.PathLike,
    max_per_row: int = 20,
    max_rows: int = 50,
) -> None:
    """A row per class (label on the left), at most ``max_per_row`` images per row; ``images`` uint8 ``(N, C, H, W)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(set(labels.tolist()))[:max_rows]
    cols = min(max_per_row, max(int((labels == k).sum()) for k in classes))
    fig, axes = plt.subplots(len(classes), cols, figsize=(cols * 0.9 + 1.2, len(classes) * 0.9 + 0.3), squeeze=False)
    for r, k in enumerate(classes):
        rows = images[labels == k][:cols]
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(rows):
                img = rows[c].permute(1, 2, 0).numpy()
                ax.imshow(
                    img[..., 0] if img.shape[2] == 1 else img,
                    cmap="gray" if img.shape[2] == 1 else None,
                    vmin=0,
                    vmax=255,
                )
            if c == 0:
                ax.set_ylabel(class_names[k], rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_barycenter_pca(
    features: dict[int, torch.Tensor],
    positions: dict[int, np.ndarray],
    weights: dict[int, np.ndarray],
    class_names: list[str],
    path: str | os.PathLike,
    max_classes: int = 20,
    max_points: int = 2000,
    seed: int = 0,
) -> None:
    """Per class: its real features projected on their first two principal components (blue dots) and the
    barycenter points on top (red), marker area proportional to the point's weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(positions)[:max_classes]
    cols = min(5, len(classes))
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, classes):
        f = features[k].numpy().astype(np.float64)
        if len(f) > max_points:
            f = f[rng.choice(len(f), max_points, replace=False)]
        center = f.mean(0)
        _, _, vt = np.linalg.svd(f - center, full_matrices=False)
        proj = (f - center) @ vt[:2].T
        bary = (positions[k].astype(np.float64) - center) @ vt[:2].T
        w = np.asarray(weights[k])
        ax.axis("on")
        ax.scatter(proj[:, 0], proj[:, 1], s=6, c="tab:blue", alpha=0.3, linewidths=0)
        ax.scatter(bary[:, 0], bary[:, 1], s=10 + 150 * w * len(w), c="tab:red", edgecolors="k")
        ax.set_title(class_names[k], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Real features (PCA, blue) and barycenter points (red, area ~ weight)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_accuracy_curve(
    curves: dict[str, list[tuple[int, float]]],
    path: str | os.PathLike,
    title: str = "",
    xlabel: str = "student step",
    ylabel: str = "validation accuracy",
) -> None:
    """Accuracy against training steps, one line per run (``{label: [(step, accuracy)]}``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker=".", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
