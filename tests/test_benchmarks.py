"""The benchmark scripts that users are pointed to: importable, and the plain-user one free of wmdd_hf."""

import ast
import importlib.util
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Sequence, Value
from PIL import Image as PILImage

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_user_script_imports_no_wmdd_hf():
    tree = ast.parse((ROOT / "benchmarks" / "plain_user.py").read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in imported if m.split(".")[0] == "wmdd_hf"], imported


def _tiny(n_per_class: int, seed: int, soft: bool) -> Dataset:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(2):
        for _ in range(n_per_class):
            base = 40 if k == 0 else 200
            images.append(PILImage.fromarray(np.clip(rng.normal(base, 20, (28, 28)), 0, 255).astype(np.uint8)))
            labels.append(k)
    columns = {"image": images, "label": labels}
    features = {"image": Image(), "label": ClassLabel(names=["dark", "bright"])}
    if soft:
        columns["soft_label"] = [[0.9, 0.1] if y == 0 else [0.1, 0.9] for y in labels]
        features["soft_label"] = Sequence(Value("float32"))
    return Dataset.from_dict(columns, features=Features(features))


def test_plain_user_trains_a_transformers_model_with_trainer(tmp_path):
    plain_user = _load("plain_user")
    train, test = _tiny(8, 0, soft=True), _tiny(20, 1, soft=False)
    hard = plain_user.train_and_test(train, test, 2, soft=False, seed=0, epochs=60, output_dir=str(tmp_path))
    soft = plain_user.train_and_test(train, test, 2, soft=True, seed=0, epochs=60, output_dir=str(tmp_path))
    assert hard >= 0.9 and soft >= 0.9, (hard, soft)  # dark vs bright: trivially separable
