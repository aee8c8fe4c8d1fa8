"""The benchmark scripts that users are pointed to: importable, and the plain-user one free of wmdd_hf."""

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
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
    plain = plain_user.train_and_test(
        train, test, 2, soft=False, seed=0, epochs=60, output_dir=str(tmp_path), augmented=False
    )
    assert hard >= 0.9 and soft >= 0.9 and plain >= 0.9, (hard, soft, plain)  # dark vs bright: trivially separable
    old = {"method": "wmdd", "ipc": 10, "labels": "hard"}  # a row from before augment existed: crop + flip
    assert plain_user.plain_key(old) == plain_user.plain_key({**old, "augment": True})
    assert plain_user.plain_key(old) != plain_user.plain_key({**old, "augment": False})


def _row(method, ipc, acc, steps, **kw):
    return {
        "method": method,
        "ipc": ipc,
        "protocol": "soft",
        "augment": True,
        "weighted_kd": True,
        "student": "wmdd_convnet {'width': 64}",
        "steps": steps,
        "acc_mean": acc,
        "acc_std": 0.0,
        "accs": [acc],
        "seeds": [0],
        **kw,
    }


def _budget(chosen, **kw):
    return {
        "max_steps": chosen,
        "factor": 8,
        "old_steps": 1000,
        "chosen": chosen,
        "reason": "r",
        "gains": {"random": 0.001},
        "plot": "p.png",
        **kw,
    }


def test_merging_parts_takes_only_what_each_part_measured_and_never_mixes_budgets(tmp_path):
    import json

    merge = _load("merge_results")
    main = tmp_path / "main.json"
    old = [_row("random", 10, 0.80, 1200), _row("wmdd", 10, 0.81, 1200), _row("random", 1, 0.70, 4000)]
    main.write_text(json.dumps({"results": old, "protocol": {"steps": {"10": 1200, "1": 4000}}}))
    part = {  # a lane: a copy of the main file, plus what it measured (rows, a budget) with a device field
        "results": [*old, _row("random", 10, 0.85, 1200, device="GPU"), _row("herding", 1, 0.72, 8000, device="GPU")],
        "protocol": {"steps": {"10": 1200, "1": 8000}},
        "budget": {"1": _budget(8000, device="GPU"), "10": _budget(1200)},
        "commands": ["python benchmarks/quality.py --ipc 1"],
    }
    merge.merge_quality(main, part)
    merge.drop_stale_rows(main)
    data = json.loads(main.read_text())
    rows = {(r["method"], r["ipc"]): r for r in data["results"]}
    assert rows[("random", 10)]["acc_mean"] == 0.85  # replaced by the part's own measurement
    assert rows[("wmdd", 10)]["acc_mean"] == 0.81  # untouched: the part only carried a copy
    assert ("random", 1) not in rows  # measured at the old IPC 1 budget: dropped, not mixed with the new one
    assert rows[("herding", 1)]["steps"] == 8000
    assert data["protocol"]["steps"] == {"10": 1200, "1": 8000}
    assert data["budget"] == {"1": _budget(8000, device="GPU")}  # the copied, unmeasured budget is not taken
    assert abs(rows[("wmdd", 10)]["ior"] - (0.81 - 0.85)) < 1e-12  # scores recomputed against the new random row
    assert (tmp_path / "main.md").exists()


def test_a_parts_stale_copy_never_replaces_a_row_another_part_measured_since(tmp_path):
    import json

    merge = _load("merge_results")
    main = tmp_path / "main.json"
    old = _row("ablation", 10, 0.82, 1200, device="GPU")  # measured before rows carried a time
    main.write_text(json.dumps({"results": [old], "protocol": {"steps": {"10": 1200}}}))
    # two lanes start as copies of the main file; lane A measures the soft row again, lane B a no-aug row
    new_soft = _row("ablation", 10, 0.84, 1200, device="cpu", measured_at="2026-11-30T20:10:00Z")
    noaug = _row("ablation", 10, 0.70, 1200, device="cpu", augment=False, measured_at="2026-11-30T20:30:00Z")
    lane_a = {"results": [new_soft]}
    lane_b = {"results": [old, noaug]}
    for order in ([lane_a, lane_b], [lane_b, lane_a]):
        main.write_text(json.dumps({"results": [old], "protocol": {"steps": {"10": 1200}}}))
        for part in order:
            merge.merge_quality(main, part)
        rows = {r.get("augment"): r["acc_mean"] for r in json.loads(main.read_text())["results"]}
        assert rows == {True: 0.84, False: 0.70}  # lane B's copy of the old soft row is not taken back
    later = _row("ablation", 10, 0.83, 1200, device="cpu", measured_at="2026-12-01T09:00:00Z")
    merge.merge_quality(main, {"results": [later]})  # a later measurement of the same row does replace it
    assert {r.get("augment"): r["acc_mean"] for r in json.loads(main.read_text())["results"]}[True] == 0.83


def test_the_sweep_names_its_best_point_among_equal_budgets_only(tmp_path):
    import argparse
    import json

    sweep = _load("sweep")
    results = {
        "points": [
            {"ipc": 10, "point": {"a": 1}, "val_acc": 0.80, "student_steps": 1200, "seeds": [0, 1, 2]},
            {"ipc": 10, "point": {"a": 2}, "val_acc": 0.82, "student_steps": 1200, "seeds": [0, 1, 2]},
            {"ipc": 10, "point": {"a": 3}, "val_acc": 0.90, "student_steps": 300, "seeds": [0]},  # other budget
            {"ipc": 1, "point": {"a": 4}, "val_acc": 0.95, "student_steps": 1200, "seeds": [0, 1, 2]},  # other IPC
            # other protocols: hard labels without augmentation, and with it
            {"ipc": 10, "point": {"a": 5}, "val_acc": 0.99, "student_steps": 1200, "seeds": [0, 1, 2]}
            | {"protocol": "hard", "augment": False},
            {"ipc": 10, "point": {"a": 6}, "val_acc": 0.70, "student_steps": 1200, "seeds": [0, 1, 2]}
            | {"protocol": "hard", "augment": False},
            {"ipc": 10, "point": {"a": 7}, "val_acc": 0.98, "student_steps": 1200, "seeds": [0, 1, 2]}
            | {"protocol": "hard", "augment": True},
        ]
    }
    args = argparse.Namespace(ipc=10, student_steps=1200, seeds=[0, 1, 2], protocol="soft", no_augment=False)
    best = sweep.write_best(results, args, tmp_path / "best.json")
    assert best["point"] == {"a": 2} and best["among"] == 2
    assert json.loads((tmp_path / "best.json").read_text())["point"] == {"a": 2}
    hard = argparse.Namespace(ipc=10, student_steps=1200, seeds=[0, 1, 2], protocol="hard", no_augment=True)
    best = sweep.write_best(results, hard, tmp_path / "best-hard.json")
    assert best["point"] == {"a": 5} and best["among"] == 2 and best["augment"] is False
    # a row measured before the protocol was recorded keeps its key (so it is never measured again)
    old = results["points"][1]
    assert sweep.key(old["point"], 10, *sweep.budget_of(old)) == sweep.key({"a": 2}, 10, 1200, [0, 1, 2])


def test_a_shared_statistics_pass_travels_with_its_feature_shards(tmp_path):
    import torch

    from wmdd_hf.statistics import ClassStatistics, NormMoments

    common = _load("common")
    features = {k: torch.randn(3 + k, 4) for k in range(2)}
    rows = {k: torch.arange(3 + k) * 10 + k for k in range(2)}
    moments = NormMoments(torch.ones(2), torch.zeros(2, 5), torch.ones(2, 5))
    stats = ClassStatistics(features, rows, {"bn": moments}, torch.tensor([3.0, 4.0]))
    run_a, run_b, work = tmp_path / "a", tmp_path / "b", tmp_path
    stats.save(run_a / "statistics.pt")
    common.share_statistics(run_a, work / "statistics-augmented-0.5-0.0.pt")
    assert (work / "statistics-augmented-0.5-0.0_features").is_dir()
    common.reuse_statistics(work / "statistics-augmented-0.5-0.0.pt", run_b)
    for folder in (work / "statistics-augmented-0.5-0.0.pt", run_b / "statistics.pt"):
        back = ClassStatistics.load(folder)
        assert all(torch.equal(back.features[k], features[k]) and torch.equal(back.rows[k], rows[k]) for k in (0, 1))


def test_a_selection_that_picks_another_rows_images_in_the_same_order_reuses_its_students(monkeypatch):
    import argparse

    from wmdd_hf.evaluation import EvaluationConfig

    quality = _load("quality")
    picks = {"herding": [3, 1, 2], "kcenter": [1, 2, 3], "random": [7, 8, 9], "barycenter_nearest_real": [1, 2, 3]}
    monkeypatch.setattr(quality, "selected_rows", lambda method, *rest: picks[method])
    config = EvaluationConfig(protocol="soft", steps=8000)
    student = f"{config.student} {config.student_kwargs}"
    existing = {
        "results": [
            _row("herding", 1, 0.70, 8000, student=student),  # same images, another order: other batches
            _row("random", 1, 0.71, 8000, student=student),  # other images
            _row("kcenter", 1, 0.72, 4000, student=student),  # same images, another budget
            _row("kcenter", 10, 0.73, 8000, student=student),  # another IPC
        ]
    }
    args = argparse.Namespace(seeds=[0])
    assert quality.twin_row(existing, "barycenter_nearest_real", 1, config, args, None, None, None) is None
    existing["results"].append(_row("kcenter", 1, 0.74, 8000, student=student))
    twin = quality.twin_row(existing, "barycenter_nearest_real", 1, config, args, None, None, None)
    assert twin is not None and twin["acc_mean"] == 0.74
    more_seeds = argparse.Namespace(seeds=[0, 1])
    assert quality.twin_row(existing, "barycenter_nearest_real", 1, config, more_seeds, None, None, None) is None
    hard = EvaluationConfig(protocol="hard", steps=8000)
    assert quality.twin_row(existing, "barycenter_nearest_real", 1, hard, args, None, None, None) is None


def test_a_plumbing_check_on_the_first_rows_never_shares_a_run_folder_with_other_row_counts(tmp_path):
    common = _load("common")
    full, small, other = (common.work_folder(str(tmp_path), n) for n in (None, 600, 1200))
    assert full == tmp_path  # real runs keep the folder they were given (and the passes already in it)
    assert len({full, small, other}) == 3 and tmp_path in small.parents


def test_the_scores_table_puts_each_sets_three_protocols_on_one_line():
    report = _load("report")

    def row(method, protocol, acc, augment=True, weighted_kd=True, **extra):
        return dict(
            method=method,
            ipc=10,
            protocol=protocol,
            augment=augment,
            weighted_kd=weighted_kd,
            acc_mean=acc,
            acc_std=0.001,
            **extra,
        )

    rows = [
        row("wmdd", "soft", 0.80, weighted_kd=False),  # the unweighted ablation: not the method's line
        row("wmdd", "soft", 0.85, ior=0.01, hlr=0.12, lrs=0.25, ars=0.26),
        row("wmdd", "hard", 0.70),
        row("wmdd", "soft", 0.60, augment=False),
        row("barycenter_nearest_real", "soft", 0.84, ior=0.0),
        row("herding", "soft", 0.84, same_set_as="barycenter_nearest_real"),
    ]
    lines = report.scores_table({"results": rows}).splitlines()[2:]
    assert lines == [
        "| wmdd (defaults) | 10 | 85.00 ± 0.10 | +1.00 | 70.00 ± 0.10 | 12.00 | 0.250 | 60.00 ± 0.10 | 0.260 |",
        "| barycenter_nearest_real = herding (the same images) | 10 | 84.00 ± 0.10 | +0.00 | — | — | — | — | — |",
    ]


def test_a_row_stopped_part_way_resumes_with_only_the_seeds_still_missing(tmp_path, monkeypatch):
    from wmdd_hf.evaluation import EvaluationConfig

    quality = _load("quality")
    trained, stop_at = [], {"seed": 2}

    def fake_evaluate(dataset, test, *, seeds, **kwargs):
        (seed,) = seeds
        if seed == stop_at["seed"]:
            raise KeyboardInterrupt  # the session ends while this student trains
        trained.append(seed)
        curve = [(10, 0.5 + seed / 100)]
        return {"accs": [0.6 + seed / 100], "curves": [curve], "seconds_per_student": 3.0, "weighted": True}

    monkeypatch.setattr(quality, "evaluate_distilled", fake_evaluate)
    dataset = Dataset.from_dict({"label": [0, 1, 1]})
    config = EvaluationConfig(protocol="soft", steps=40)
    pending, plot = tmp_path / "pending" / "row.json", tmp_path / "row.png"
    # as main() builds it: the protocol's description has tuples (crop_scale), which come back from JSON as lists
    identity = {"row": "wmdd-ipc50-soft", "protocol": config.describe(), "set": quality.set_fingerprint(dataset)}
    assert isinstance(identity["protocol"]["crop_scale"], tuple)

    def run(seeds, ident=identity):
        return quality.train_seeds(dataset, None, None, config, seeds, None, plot, "cpu", pending, ident)

    try:
        run([0, 1, 2])
    except KeyboardInterrupt:
        pass
    assert trained == [0, 1] and pending.exists()
    stop_at["seed"] = None
    result = run([0, 1, 2])
    assert trained == [0, 1, 2]  # seeds 0 and 1 were not trained again
    assert result["seeds"] == [0, 1, 2] and result["accs"] == [0.6, 0.61, 0.62] and plot.exists()
    other_set = {**identity, "set": quality.set_fingerprint(Dataset.from_dict({"label": [0, 1, 0]}))}
    assert other_set != identity
    run([0], other_set)  # another set (or protocol, device, teacher) never reuses a pending student
    assert trained == [0, 1, 2, 0]


def test_the_results_name_the_rows_that_each_missing_score_waits_for():
    merge = _load("merge_results")

    def row(method, protocol, acc, augment=True):
        return dict(
            method=method,
            ipc=50,
            protocol=protocol,
            augment=augment,
            student="convnet",
            acc_mean=acc,
            acc_std=0.001,
            seeds=[0, 1, 2],
            steps=4800,
        )

    data = {
        "full_data": {"hard": {"acc_mean": 0.92, "acc_std": 0.0}},
        "results": [
            row("random", "soft", 0.90),
            row("random", "hard", 0.80),
            row("wmdd", "soft", 0.91),
            row("wmdd", "soft", 0.70, augment=False),
            row("herding", "soft", 0.89),
            row("herding", "hard", 0.82),
        ],
    }
    merge.add_scores(data)
    waiting = {r["method"]: r["waiting_for"] for r in data["results"] if r.get("waiting_for")}
    assert waiting == {
        "random": ["no augmentation"],
        "wmdd": ["hard labels", "random, no augmentation"],
        "herding": ["no augmentation", "random, no augmentation"],
    }
    rows = {r["method"]: r for r in data["results"] if r["augment"] and r["protocol"] == "soft"}
    assert rows["herding"]["lrs"] is not None and rows["herding"]["ars"] is None
    data["results"] += [row("random", "soft", 0.75, augment=False), row("herding", "soft", 0.72, augment=False)]
    data["results"].append(row("wmdd", "hard", 0.81))
    merge.add_scores(data)
    assert not any(r.get("waiting_for") for r in data["results"])
    soft = [r for r in data["results"] if r["protocol"] == "soft" and r["augment"]]
    assert all(r[k] is not None for r in soft for k in ("ior", "hlr", "lrs", "ars"))


def test_set_distances_measure_w2_and_coverage_against_the_real_features_by_hand():
    import torch

    set_distances = _load("set_distances")
    real = {0: torch.tensor([[0.0, 0.0], [2.0, 0.0]]), 1: torch.tensor([[0.0, 0.0], [0.0, 4.0]])}
    # class 0: the set is the two real points themselves -> W2^2 0, coverage 0.
    # class 1: one point at (0, 1) with all the weight -> W2^2 = (1 + 9) / 2 = 5; distances 1 and 3, median 2.
    points = {0: np.array([[0.0, 0.0], [2.0, 0.0]]), 1: np.array([[0.0, 1.0], [5.0, 5.0]])}
    weights = {0: np.array([0.5, 0.5]), 1: np.array([1.0, 0.0])}
    w2, coverage = set_distances.distances(real, points, weights)
    assert abs(w2 - (0 + 5) / 2) < 1e-9
    # coverage looks at every set point, weighted or not: class 1's nearest are (0, 1) for both -> 1 and 3 -> median.
    assert abs(coverage - (0 + 2) / 2) < 1e-6


def test_set_distances_rank_correlation_reads_the_order_by_hand():
    set_distances = _load("set_distances")
    rows = [dict(w2=w, soft_acc=a) for w, a in [(1.0, 0.9), (2.0, 0.8), (3.0, 0.7), (4.0, None)]]
    assert set_distances.rank_correlation(rows) == (-1.0, 3)  # nearer sets teach better, in every pair
    rows[0]["soft_acc"] = 0.6
    assert set_distances.rank_correlation(rows) == (0.5, 3)  # ranks (1, 2, 3) against (1, 3, 2): 1 - 6 * 2 / 24
    assert set_distances.rank_correlation(rows[1:]) is None


def test_the_regimes_table_gives_each_cell_what_the_images_add_over_random_in_the_same_regime():
    report = _load("report")

    def row(method, protocol, acc, augment=True):
        return dict(method=method, ipc=10, protocol=protocol, augment=augment, acc_mean=acc, acc_std=0.0)

    rows = [
        row("random", "hard", 0.70, augment=False),
        row("wmdd", "hard", 0.72, augment=False),
        row("random", "fixed", 0.60),
        row("wmdd", "fixed", 0.55),
        row("wmdd", "soft", 0.85),  # no random row under soft: no difference shown
        row("wmdd", "hard", 0.99, augment=True),  # hard + aug, no random: plain accuracy
    ]
    lines = report.regimes({"results": rows}).splitlines()
    assert lines[2] == "| wmdd (defaults) | 85.00 | 99.00 | 72.00 (+2.00) | 55.00 (-5.00) |"
    assert lines[3] == "| random | — | — | 70.00 | 60.00 |"
    assert len(lines) == 4


def test_the_results_table_shows_what_the_images_add_at_the_same_protocol_and_augmentation():
    report = _load("report")
    base = dict(ipc=10, protocol="hard", weighted=False, student="s")
    rows = [
        {**base, "method": "random", "augment": True, "acc_mean": 0.70},
        {**base, "method": "random", "augment": False, "acc_mean": 0.60},
        {**base, "method": "wmdd", "augment": False, "acc_mean": 0.65},
        {**base, "method": "herding", "augment": True, "acc_mean": 0.71, "ipc": 1},
    ]
    assert abs(report.images_add(rows[2], rows) - 0.05) < 1e-12
    assert report.images_add(rows[0], rows) is None  # random itself
    assert report.images_add(rows[3], rows) is None  # no random row at IPC 1


@pytest.mark.parametrize(
    "file, name", [("README.md", "headline"), ("docs/results.md", "regimes"), ("docs/results.md", "scores")]
)
def test_the_generated_tables_are_the_ones_the_results_give(file, name):
    import json
    import re

    report = _load("report")
    text = (ROOT / file).read_text()
    shown = re.search(rf"<!-- {name} table: [^\n]*-->\n(.*?)\n<!-- end of the {name} table -->", text, flags=re.S)
    assert shown, f"{file} lost its '{name} table' markers"
    results = json.loads((ROOT / "benchmarks" / "results" / "fashion_mnist.json").read_text())
    make = {"headline": report.headline, "regimes": report.regimes, "scores": report.scores_table}[name]
    assert shown.group(1) == make(results), "run: python benchmarks/report.py"


def test_the_headline_table_shows_each_regime_where_wmdd_and_random_were_both_measured():
    report = _load("report")

    def row(method, protocol, acc, ipc=10, augment=True, std=0.0):
        return dict(method=method, ipc=ipc, protocol=protocol, augment=augment, acc_mean=acc, acc_std=std)

    rows = [
        row("wmdd", "fixed", 0.75, std=0.01),
        row("random", "fixed", 0.70),
        row("herding", "fixed", 0.72),
        row("wmdd", "hard", 0.60, ipc=1, augment=False),
        row("random", "hard", 0.62, ipc=1, augment=False),
        row("wmdd", "soft", 0.85),  # no random row: not shown
    ]
    lines = report.headline({"results": rows}).splitlines()
    assert lines[2] == "| hard labels, no augmentation | 1 | 60.00 ± 0.00 | 62.00 ± 0.00 | — | -2.0 |"
    assert (
        lines[3]
        == "| fixed soft label per image + crop/flip | 10 | 75.00 ± 1.00 | 70.00 ± 0.00 | 72.00 ± 0.00 | +5.0 |"
    )
    assert len(lines) == 4
    text = "x\n<!-- headline table: cmd -->\nold\n<!-- end of the headline table -->\ny"
    assert report.replace_block(text, "headline", "new") == text.replace("old", "new")
    with pytest.raises(ValueError, match="no 'regimes table' markers"):
        report.replace_block(text, "regimes", "new")


def test_the_report_writes_results_the_figure_and_the_readme_blocks_from_the_rows(tmp_path):
    report = _load("report")
    convnet = "wmdd_convnet {'width': 64}"

    def row(method, protocol, acc, augment=True):
        return dict(
            method=method,
            ipc=10,
            protocol=protocol,
            augment=augment,
            weighted_kd=True,
            weighted=False,
            student=convnet,
            acc_mean=acc,
            acc_std=0.01,
            seeds=[0, 1, 2],
            steps=1200,
            device="cpu",
        )

    results = {"results": [row("wmdd", "hard", 0.78), row("random", "hard", 0.68), row("wmdd", "fixed", 0.74, False)]}
    (tmp_path / "docs").mkdir()
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    blocks = "".join(f"<!-- {n} table: cmd -->\nstale\n<!-- end of the {n} table -->\n" for n in ("regimes", "scores"))
    (tmp_path / "README.md").write_text(
        "# x\n<!-- headline table: cmd -->\nstale\n<!-- end of the headline table -->\n"
    )
    (tmp_path / "docs" / "results.md").write_text(blocks)
    report.write_all(results, root=tmp_path)
    text = (tmp_path / "benchmarks" / "results" / "fashion_mnist.md").read_text()
    assert "| wmdd-ipc10-hard | 78.00 ± 1.00 | +10.00 |" in text  # named by its experiment, beside random
    assert "| wmdd-ipc10-fixed-noaug | 74.00 ± 1.00 | — |" in text  # no random row under that protocol
    assert "run_experiments.py --run --only <experiment>" in text
    readme = (tmp_path / "README.md").read_text()
    assert (
        "stale" not in readme and "| hard labels + crop/flip | 10 | 78.00 ± 1.00 | 68.00 ± 1.00 | — | +10.0 |" in readme
    )
    assert "stale" not in (tmp_path / "docs" / "results.md").read_text()
    assert (tmp_path / "benchmarks" / "results" / "headline.png").read_bytes()[:4] == b"\x89PNG"

    # the second teacher's report writes its own file and block, never the main ones
    main_md = (tmp_path / "benchmarks" / "results" / "fashion_mnist.md").read_text()
    rgb_wmdd = {**row("wmdd_init_real", "hard", 0.80), "colour_spread": 12.5}
    rgb = {"dataset": "fashion_mnist_rgb32", "results": [rgb_wmdd, row("random", "hard", 0.70)]}
    (tmp_path / "docs" / "results.md").write_text(
        "<!-- second teacher table: cmd -->\nstale\n<!-- end of the second teacher table -->\n"
    )
    report.write_all(rgb, root=tmp_path)
    assert (tmp_path / "benchmarks" / "results" / "fashion_mnist.md").read_text() == main_md
    assert "12.50" in (tmp_path / "benchmarks" / "results" / "fashion_mnist_rgb32.md").read_text()
    block = (tmp_path / "docs" / "results.md").read_text()
    assert "| — | 80.00 (+10.00) | — | — | 12.50 |" in block
    assert "| random | — | 70.00 | — | — | 0 |" in block


def test_every_results_row_is_a_declared_experiment_and_every_experiment_is_one_row(tmp_path):
    import json
    import shutil

    runner = _load("run_experiments")
    measured_benchmarks = [name for name in runner.BENCHMARKS if runner.results_file(name).exists()]
    assert "fashion_mnist" in measured_benchmarks
    for benchmark in measured_benchmarks:
        folder = runner.experiments_folder(benchmark)
        experiments = runner.load_experiments(folder)  # unique rows, known keys and students
        rows = json.loads(runner.results_file(benchmark).read_text())["results"]
        copy = tmp_path / benchmark
        shutil.copytree(folder, copy)
        assert runner.declare(rows, copy) == 0, (
            f"a {benchmark} row has no experiment file: python benchmarks/run_experiments.py --benchmark "
            f"{benchmark} --declare"
        )
        measured = {name for name, e in experiments.items() if runner.measured(e, rows) is not None}
        assert len(measured) == len(rows), benchmark  # each row is measured by exactly one declaration


def test_the_runner_builds_the_quality_command_of_a_missing_row(tmp_path):
    import json

    runner = _load("run_experiments")
    experiment = {
        "method": "wmdd",
        "row": "wmdd_latent_real",
        "ipc": 10,
        "protocol": "hard",
        "augment": False,
        "weighted_kd": True,
        "student": "wmdd_convnet {'width': 64}",
        "seeds": [0, 1, 2],
        "synthesis": {"init": "real", "generator": "g"},
    }
    row = {**experiment, "method": "wmdd_latent_real", "seeds": [0, 1], "acc_mean": 0.7, "acc_std": 0.0}
    del row["row"]
    assert runner.measured(experiment, [row]) is None  # a seed missing
    assert runner.measured(experiment, [{**row, "seeds": [0, 1, 2]}]) is not None
    assert runner.measured({**experiment, "augment": True}, [{**row, "seeds": [0, 1, 2]}]) is None
    cmd = runner.command(experiment, tmp_path / "r.json", "work", "cuda", "--student_steps 12")
    text = " ".join(cmd)
    assert "--methods wmdd --protocols hard --seeds 0 1 2" in text and "--row_name wmdd_latent_real" in text
    assert "--no_augment" in cmd and "--unweighted" not in cmd
    assert json.loads(cmd[cmd.index("--synthesis") + 1]) == {"generator": "g", "init": "real"}
    assert cmd[-4:] == ["--device", "cuda", "--student_steps", "12"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.json").write_text(json.dumps({**experiment, "colour": 1}))
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        runner.load_experiments(tmp_path / "bad")
    (tmp_path / "bad" / "a.json").write_text(json.dumps(experiment))
    (tmp_path / "bad" / "b.json").write_text(json.dumps(experiment))
    with pytest.raises(ValueError, match="b.json declares the same row as a.json"):
        runner.load_experiments(tmp_path / "bad")


def test_imagenet_shape_runs_small_on_the_cpu_and_projects_from_what_it_measured(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "imagenet_shape.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "imagenet_shape.py"), "--device", "cpu", "--classes", "3"]
    command += ["--per_class", "10", "--size", "32", "--iterations", "2", "--num_workers", "0"]
    command += ["--work_dir", str(tmp_path / "work"), "--results", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["data"] == {**result["data"], "classes": 3, "per_class": 10}
    run, rates = result["end_to_end"], result["statistics_pass"]
    assert set(run["stage_seconds"]) == {"statistics_s", "barycenter_s", "synthesis_s", "soft_labels_s", "save_s"}
    assert rates["images"] == 30 and min(rates[k] for k in rates if k.endswith("_img_s")) > 0
    # the projection is ImageNet-1K's work divided by the measured rates
    projection = result["projection_imagenet_1k"]
    assert projection["statistics_min"]["1"] == pytest.approx(
        1_281_167 / rates["pass_device_decode_img_s"] / 60, rel=0.01
    )
    assert projection["synthesis_ipc50_min"]["8"] == pytest.approx(
        1000 * 50 * 1000 / run["synthesis_img_x_it_s"] / 60 / 8, rel=0.01
    )
    # the data is JPEG bytes in an Image column, read back by datasets
    from datasets import load_from_disk

    data = load_from_disk(str(tmp_path / "work" / "textures-3x10-32px"))
    assert data.features["image"].__class__.__name__ == "Image" and len(data) == 30
    assert data.cast_column("image", Image(decode=False))[0]["image"]["bytes"][:3] == b"\xff\xd8\xff"


def test_gpu_benchmark_runs_small_on_the_cpu_with_the_bare_pass_beside_the_step(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "gpu.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--size", "32"]
    command += ["--batches", "20", "--steps", "1", "--repeats", "1", "--profile", "--results", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    rows = json.loads(out.read_text())["rows"]
    assert [r["setting"] for r in rows] == ["fp32", "bf16", "bf16+channels_last"]
    for r in rows:
        assert r["step_over_bare"] == pytest.approx(r["seconds_per_step"] / r["bare_fwd_bwd_s"], rel=0.01)
    assert "synthesis steps" in (tmp_path / "gpu_profile.txt").read_text()


def test_the_second_teacher_familys_rows_run_on_its_data_and_teacher_with_the_grey_budgets(tmp_path):
    import json

    runner = _load("run_experiments")
    experiment = {"method": "random", "ipc": 10, "protocol": "hard", "student": "wmdd_convnet {'width': 64}"}
    experiment["seeds"] = [0]
    grey = runner.command(experiment, tmp_path / "r.json")
    assert "--dataset" not in grey and "--teacher" not in grey  # the default benchmark: quality.py's defaults
    rgb = runner.command(experiment, tmp_path / "r.json", benchmark="fashion_mnist_rgb32")
    assert rgb[rgb.index("--dataset") + 1] == "fashion_mnist_rgb32"
    assert rgb[rgb.index("--teacher") + 1].endswith("checkpoints/fashion-mnist-rgb32-resnet18")
    assert rgb[rgb.index("--budget_from") + 1].endswith("results/fashion_mnist.json")

    quality = _load("quality")
    source = tmp_path / "grey.json"
    source.write_text(json.dumps({"results": [], "protocol": {"steps": {"10": 1200, "1": 8000}}}))
    assert quality.adopted_budgets(source, {}, [10]) == {"10": 1200}
    assert quality.adopted_budgets(source, {10: 900}, [10, 1]) == {"1": 8000}  # its own budget stays
    with pytest.raises(SystemExit, match=r"no validated budget for IPC \[50\]"):
        quality.adopted_budgets(source, {}, [10, 50])


def test_the_results_table_shows_the_colour_spread_only_where_a_set_drifted_into_colour():
    report = _load("report")
    base = dict(ipc=10, protocol="hard", student="wmdd_convnet {'width': 64}", seeds=[0], acc_mean=0.7, acc_std=0.0)
    grey = {"results": [{**base, "method": "random"}, {**base, "method": "wmdd", "colour_spread": 0.0}]}
    assert "colour spread" not in report.results_markdown(grey)
    rgb = {
        "dataset": "fashion_mnist_rgb32",
        "results": [grey["results"][0], {**base, "method": "wmdd", "colour_spread": 2.5}],
    }
    text = report.results_markdown(rgb)
    assert text.startswith("# Fashion-MNIST as RGB 32 px benchmark")
    cells = {line.split(" | ")[0][2:]: [c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()}
    assert cells["wmdd-ipc10-hard"][9] == "2.50" and cells["random-ipc10-hard"][9] == "—"


def test_a_selection_computes_the_statistics_pass_and_barycenters_but_never_a_synthesis(
    tmp_path, tiny_teacher, small_train
):
    from types import SimpleNamespace

    quality = _load("quality")
    args = SimpleNamespace(overrides={})
    herding = quality.selected_rows("herding", 2, args, tiny_teacher, small_train, tmp_path)
    nearest = quality.selected_rows("barycenter_nearest_real", 2, args, tiny_teacher, small_train, tmp_path)
    assert len(herding) == len(nearest) == 20 and len(set(herding)) == 20
    folder = quality.set_folder(tmp_path, "wmdd", 2, {})
    assert (tmp_path / "statistics.pt").exists() and (folder / "barycenters.pt").exists()
    assert not (folder / "synthetic").exists() and not (folder / "distilled").exists()


def test_a_second_benchmarks_part_merges_into_its_own_results_file(tmp_path, monkeypatch):
    import json
    import sys

    merge = _load("merge_results")
    monkeypatch.setattr(merge, "RESULTS", tmp_path)
    grey = {"results": [_row("random", 10, 0.70, 1200)], "protocol": {"steps": {"10": 1200}}}
    (tmp_path / "fashion_mnist.json").write_text(json.dumps(grey))
    part = {"dataset": "fashion_mnist_rgb32", "results": [_row("wmdd", 10, 0.75, 1200, device="cpu")]}
    part["protocol"] = {"steps": {"10": 1200}, "steps_from": "benchmarks/results/fashion_mnist.json"}
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "part.json").write_text(json.dumps(part))
    monkeypatch.setattr(sys, "argv", ["merge_results.py", str(tmp_path / "part" / "part.json")])
    merge.main()
    assert json.loads((tmp_path / "fashion_mnist.json").read_text()) == grey  # the grey file is untouched
    rgb = json.loads((tmp_path / "fashion_mnist_rgb32.json").read_text())
    assert [r["method"] for r in rgb["results"]] == ["wmdd"] and rgb["dataset"] == "fashion_mnist_rgb32"
    assert (tmp_path / "fashion_mnist_rgb32.md").read_text().startswith("# Fashion-MNIST as RGB 32 px")
