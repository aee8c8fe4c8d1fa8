"""Kept features on disk, one shard per class, owned by one process each."""

import pytest
import torch

from wmdd_hf import load_backbone
from wmdd_hf.checkpoint import atomic_save, load
from wmdd_hf.feature_store import ClassShards, class_owner, owned_classes, shard_path, write_class
from wmdd_hf.statistics import ClassStatistics, collect_class_statistics


def test_owners_split_the_classes_into_contiguous_blocks_like_accelerate():
    # Accelerate's split_between_processes of range(10) over 3 processes: [0..3], [4..6], [7..9]
    assert [owned_classes(10, 3, p) for p in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert [owned_classes(2, 4, p) for p in range(4)] == [[0], [1], [], []]
    for k_total, procs in [(10, 3), (1000, 8), (7, 7), (3, 5)]:
        blocks = [owned_classes(k_total, procs, p) for p in range(procs)]
        assert sorted(k for b in blocks for k in b) == list(range(k_total))  # each class exactly once
        assert all(class_owner(k, k_total, procs) == p for p, b in enumerate(blocks) for k in b)
    with pytest.raises(ValueError, match="outside"):
        class_owner(10, 10, 3)


def _stats():
    torch.manual_seed(0)
    b = load_backbone("wmdd_convnet", num_classes=3, in_chans=1, width=8, pretrained=False).eval()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(60) % 3
    batches = [(images[s : s + 20], labels[s : s + 20], torch.arange(s, s + 20)) for s in range(0, 60, 20)]
    return collect_class_statistics(b, batches, num_classes=3)


def test_statistics_file_holds_no_features_and_loads_them_class_by_class(tmp_path):
    stats = _stats()
    stats.save(tmp_path / "statistics.pt")
    state = load(tmp_path / "statistics.pt")
    assert "features" not in state and "rows" not in state  # the file does not grow with the dataset
    assert sorted(p.name for p in (tmp_path / "statistics_features").iterdir()) == [
        "class_00000.safetensors",
        "class_00001.safetensors",
        "class_00002.safetensors",
    ]
    back = ClassStatistics.load(tmp_path / "statistics.pt")
    assert isinstance(back.features, ClassShards) and sorted(back.features) == [0, 1, 2]
    for k in range(3):
        assert torch.equal(back.features[k], stats.features[k]) and torch.equal(back.rows[k], stats.rows[k])
        assert back.rows[k].dtype == torch.int64
    for name, m in stats.norms.items():
        assert torch.equal(back.norms[name].m2, m.m2)
    assert torch.equal(back.counts, stats.counts)


def test_a_statistics_file_of_an_earlier_version_still_loads(tmp_path):
    stats = _stats()
    atomic_save(stats.to_state(), tmp_path / "statistics.pt")  # features inside, as earlier versions wrote it
    back = ClassStatistics.load(tmp_path / "statistics.pt")
    assert isinstance(back.features, dict)
    assert all(torch.equal(back.features[k], stats.features[k]) for k in range(3))


def test_a_missing_shard_says_what_to_do(tmp_path):
    write_class(tmp_path, 0, torch.ones(2, 4), torch.tensor([5, 9]))
    shards = ClassShards(tmp_path, [0, 1], "rows")
    assert shards[0].tolist() == [5, 9]
    with pytest.raises(FileNotFoundError, match="same output_dir"):
        shards[1]
    with pytest.raises(KeyError):
        shards[2]
    assert not list(tmp_path.glob(".*.tmp")) and shard_path(tmp_path, 0).exists()  # written under its final name
