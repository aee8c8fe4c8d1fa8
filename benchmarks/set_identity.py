"""Fingerprints of a small distilled set, to check that a refactor is behaviour-preserving.

    python benchmarks/set_identity.py --out outputs/identity.json            # before the change
    python benchmarks/set_identity.py --out outputs/identity-new.json        # after it
    diff outputs/identity.json outputs/identity-new.json                     # empty: byte-identical sets

It distils the first 2,000 training images of Fashion-MNIST with the project's teacher, once with the demo's
configuration (``configs/fashion_mnist_ipc10.yaml``: init real) and once with the library defaults (init noise),
both at IPC 2 for 20 steps with stored views, and writes the SHA-256 of every file of each ``distilled/`` folder
(and of ``barycenters.pt``'s arrays). The same code paths as ``make demo``, in about two minutes on one core.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
import yaml

from wmdd_hf import DistillationArguments, Distiller, load_fashion_mnist

ROOT = Path(__file__).resolve().parents[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fingerprints(run: Path) -> dict:
    out = {str(p.relative_to(run)): digest(p) for p in sorted((run / "distilled").rglob("*")) if p.is_file()}
    # the same metadata in another key order is the same set: also a digest of the parsed, key-sorted file
    meta = json.loads((run / "distilled" / "wmdd_hf.json").read_text())
    out["wmdd_hf.json, keys sorted"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    from wmdd_hf.checkpoint import load

    bary = load(run / "barycenters.pt")
    out["barycenters"] = hashlib.sha256(
        b"".join(bytes(memoryview(bary[k][f]).cast("B")) for k in sorted(bary) for f in ("positions", "weights"))
    ).hexdigest()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    demo = yaml.safe_load((ROOT / "configs" / "fashion_mnist_ipc10.yaml").read_text())
    teacher = str(ROOT / demo.pop("teacher"))
    for key in ("dataset", "output_dir", "report_to"):
        demo.pop(key)
    train = load_fashion_mnist()["train"].select(range(args.rows))
    small = dict(images_per_class=2, iterations=20, soft_label_epochs=2, disable_tqdm=True, logging_steps=5)
    result = {}
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # relative output folders: the card and wmdd_hf.json name them, so they must not vary
        for name, options in (("demo", {**demo, **small}), ("defaults", small)):
            Distiller(teacher, DistillationArguments(output_dir=name, **options), train).distill()
            result[name] = fingerprints(Path(name))
        os.chdir(ROOT)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
