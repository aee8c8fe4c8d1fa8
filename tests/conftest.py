"""Shared fixtures: a small Fashion-MNIST subset (the real data, from Debian's package) and a tiny trained teacher."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Every cache the tests touch lives in one session folder, never in the home directory (set before any library
# reads its environment at import time). The folder is removed when the session ends.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

SESSION_DIR = Path(tempfile.mkdtemp(prefix="wmdd_hf-tests-"))
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)
os.environ["HF_HOME"] = str(SESSION_DIR / "hf_home")
os.environ["HF_DATASETS_CACHE"] = str(SESSION_DIR / "hf_datasets")
os.environ["HF_HUB_CACHE"] = str(SESSION_DIR / "hf_hub")
os.environ["WMDD_HF_CACHE"] = str(SESSION_DIR / "wmdd_hf")
os.environ["MPLCONFIGDIR"] = str(SESSION_DIR / "matplotlib")

# The Hub double must be in place before huggingface_hub / datasets read HF_ENDPOINT at import time.
from hub_double import HubDouble  # noqa: E402

HUB = HubDouble().start()
os.environ["HF_ENDPOINT"] = HUB.endpoint
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ["HF_HUB_DISABLE_IMPLICIT_TOKEN"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_UPDATE_DOWNLOAD_COUNTS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))


@pytest.fixture
def hub():
    """The loopback Hub double (fresh repos for every test); unknown routes fail the test."""
    HUB.repos.clear()
    HUB.unknown.clear()
    yield HUB
    assert not HUB.unknown, f"the client called routes the Hub double does not know: {HUB.unknown}"


@pytest.fixture(scope="session")
def fashion_mnist():
    from wmdd_hf import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture(scope="session")
def small_train(fashion_mnist):
    """300 real images per class (3000 rows), stratified, from the training split."""
    from wmdd_hf.data import class_index

    index = class_index(fashion_mnist["train"], "label")
    rows = sorted(int(r) for k in index for r in index[k][:300])
    return fashion_mnist["train"].select(rows)


@pytest.fixture(scope="session")
def small_test(fashion_mnist):
    return fashion_mnist["test"].select(range(1000))


def train_tiny_teacher(train, epochs: int = 3, width: int = 16, seed: int = 0):
    """A ConvNet(width, depth 2) trained for a few epochs on ``train``: seconds on 2 cores, ~75% accuracy."""
    import torch.nn.functional as F

    from wmdd_hf import load_backbone
    from wmdd_hf.augment import AugmentConfig, augment
    from wmdd_hf.data import decode_all

    torch.manual_seed(seed)
    teacher = load_backbone(
        "wmdd_convnet",
        num_classes=10,
        in_chans=1,
        pretrained=False,
        width=width,
        depth=2,
        class_names=train.features["label"].names,
    )
    x, y = decode_all(train, teacher.spec, "image", "label", progress=False)
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        teacher.train()
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 128):
            idx = perm[s : s + 128]
            logits, _ = teacher(augment(x[idx].float() / 255, AugmentConfig(scale=(0.8, 1.0)), g))
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return teacher.eval()


@pytest.fixture(scope="session")
def tiny_teacher_dir(small_train, tmp_path_factory):
    from wmdd_hf import save_backbone

    folder = tmp_path_factory.mktemp("teacher")
    save_backbone(train_tiny_teacher(small_train), folder, metadata={"test_acc": None})
    return folder


@pytest.fixture
def tiny_teacher(tiny_teacher_dir):
    from wmdd_hf import load_backbone

    return load_backbone(tiny_teacher_dir)
