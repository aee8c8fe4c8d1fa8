"""What the quality benchmark and the synthesis sweep share: the device, the splits, and one statistics pass per
view of the real images, copied into every run folder that can reuse it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wmdd_hf import DistillationArguments, load_fashion_mnist  # noqa: E402
from wmdd_hf.arguments import RESEARCH_FIELDS  # noqa: E402
from wmdd_hf.checkpoint import atomic_save  # noqa: E402
from wmdd_hf.checkpoint import load as load_checkpoint  # noqa: E402
from wmdd_hf.data import train_validation_split  # noqa: E402
from wmdd_hf.feature_store import FOLDER  # noqa: E402

VALIDATION_SIZE, SPLIT_SEED = 5000, 0


def pick_device(name: str | None) -> torch.device:
    """``name`` when given, else cuda when available, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def provenance(script: str, device: torch.device) -> dict:
    """Where a results file came from: the command (``script`` with this process's arguments), date and device."""
    import datetime

    return {
        "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]),
        "date": datetime.date.today().isoformat(),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
    }


def distillation_arguments(**options) -> DistillationArguments:
    """``DistillationArguments`` from flat options, the form of the experiment files, the sweep's grids and the run
    configs: the names of ``ResearchOptions`` go into ``research_options``."""
    research = {k: options.pop(k) for k in list(options) if k in RESEARCH_FIELDS}
    return DistillationArguments(**options, research_options=research)


#: --dataset of the benchmarks: name -> load_fashion_mnist arguments. The RGB copy keeps the rows in the same order,
#: so both have the same validation part and the same random picks.
DATASETS = {"fashion_mnist": {}, "fashion_mnist_rgb32": {"rgb": True, "size": 32}}


def benchmark_splits(limit_train: int | None = None, dataset: str = "fashion_mnist"):
    """``(train, validation, test)``: the 5,000-image stratified validation split (seed 0) held out of Fashion-MNIST's
    training split (``dataset``: a key of :data:`DATASETS`). ``limit_train`` (plumbing checks only) keeps the first N
    training rows and N / 5 of the others."""
    data = load_fashion_mnist(**DATASETS[dataset])
    train, validation = train_validation_split(data["train"], VALIDATION_SIZE, SPLIT_SEED)
    test = data["test"]
    if limit_train:
        train, validation = train.select(range(limit_train)), validation.select(range(limit_train // 5))
        test = test.select(range(limit_train // 5))
    return train, validation, test


def work_folder(work_dir: str, limit_train: int | None) -> Path:
    """Where a benchmark keeps its runs and shared statistics passes. A plumbing check on the first N training rows
    gets a folder of its own: a pass over other rows must never be reused for it, nor its pass for a real run."""
    return Path(work_dir) / f"limit_train-{limit_train}" if limit_train else Path(work_dir)


def statistics_file(options: dict) -> str:
    """The name of the shared statistics pass for these options: it depends only on the view of the real images and
    on which teacher features are kept."""
    parts = []
    if options.get("statistics_view", "clean") != "clean":
        parts.append(f"augmented-{options.get('crop_scale_min', 0.5)}-{options.get('jitter', 0.0)}")
    if options.get("feature_pool", "none") != "none":
        parts.append(f"pool_{options['feature_pool']}")
    return "-".join(["statistics", *parts]) + ".pt"


def _copy_pass(source: Path, target: Path, shards: str) -> None:
    """Copies a statistics pass (``statistics.pt`` and, since the features moved to one shard per class, its
    shard folder, hard-linked where possible) so that ``target`` finds its shards in ``target.parent / shards``."""
    state = load_checkpoint(source)
    if "feature_shards" in state:  # features in shards beside the file (older passes keep them inside)
        shutil.copytree(source.parent / state["feature_shards"], target.parent / shards, copy_function=_link_or_copy)
        state["feature_shards"] = shards
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, target)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def reuse_statistics(shared: Path, out: Path) -> None:
    """Before a run: the shared pass into the run folder (the pass does not depend on the synthesis options)."""
    if shared.exists() and not (out / "statistics.pt").exists():
        _copy_pass(shared, out / "statistics.pt", FOLDER)


def share_statistics(out: Path, shared: Path) -> None:
    """After a run: its pass becomes the shared one when there is none yet."""
    if not shared.exists():
        _copy_pass(out / "statistics.pt", shared, f"{shared.stem}_features")
