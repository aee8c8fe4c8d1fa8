import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import load_dataset

from wmdd_hf import DistillationArguments, Distiller, load_distilled
from wmdd_hf.hub import HubError, push_distilled

TOKEN = "hf_test_token"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def distilled_run(tiny_teacher_dir, small_train, tmp_path_factory):
    from wmdd_hf import load_backbone

    out = tmp_path_factory.mktemp("hubrun") / "run"
    args = DistillationArguments(
        output_dir=str(out),
        images_per_class=2,
        iterations=5,
        batch_size=20,
        soft_label_epochs=2,
        disable_tqdm=True,
        hub_dataset_id="tester/fmnist-wmdd",
        hub_token=TOKEN,
    )
    distiller = Distiller(load_backbone(tiny_teacher_dir), args, small_train)
    distiller.distill()
    return distiller


def _rows(ds):
    return [(r["image"].tobytes(), r["image"].mode, r["label"], r["soft_label"], r["barycenter_weight"]) for r in ds]


def test_push_and_load_back_through_the_real_clients(hub, distilled_run, tmp_path):
    url = distilled_run.push_to_hub()
    assert "tester/fmnist-wmdd" in url
    repo = hub.repos["tester/fmnist-wmdd"]
    assert any(p.startswith("data/train-") and p.endswith(".parquet") for p in repo.files)
    assert "synthetic_grid.png" in repo.files and "README.md" in repo.files
    assert all(p in repo.lfs for p in repo.files if p.endswith(".parquet"))
    local = distilled_run.distilled
    remote = load_dataset("tester/fmnist-wmdd", split="train", token=TOKEN, cache_dir=str(tmp_path / "cache"))
    assert remote.features == local.features
    assert _rows(remote) == _rows(local)
    # image bytes are the PNG bytes that were written
    assert (
        remote.cast_column("image", remote.features["image"].__class__(decode=False))[0]["image"]["bytes"][:8]
        == b"\x89PNG\r\n\x1a\n"
    )
    views = load_dataset(
        "tester/fmnist-wmdd", "soft_labels", split="train", token=TOKEN, cache_dir=str(tmp_path / "cache")
    )
    columns = {"epoch", "image_index", "view", "partner", "box", "logits"}
    assert len(views) == 2 * len(local) and set(views.column_names) == columns
    ds, views2, meta = load_distilled("tester/fmnist-wmdd", token=TOKEN)
    assert len(ds) == 20 and len(views2) == 40 and meta["arguments"]["images_per_class"] == 2
    # the stored logits came back intact: the teacher's logits on the rendered views of the downloaded images
    from wmdd_hf.evaluation import _as_tensors
    from wmdd_hf.soft_labels import ViewLabels

    stored = ViewLabels.from_columns(views2, len(ds))
    teacher = distilled_run.teacher
    pixels = _as_tensors(ds, teacher.spec)[0].float() / 255
    with torch.no_grad():
        online = teacher(stored.render(pixels, 1, torch.arange(len(ds))))[0]
    torch.testing.assert_close(stored.logits[1].float(), online, atol=2e-2, rtol=1e-2)


def test_card_renders_validates_and_keeps_configs(hub, distilled_run):
    from huggingface_hub import DatasetCard

    distilled_run.push_to_hub()
    card = DatasetCard(hub.repos["tester/fmnist-wmdd"].files["README.md"].decode())
    data = card.data.to_dict()
    assert {c["config_name"] for c in data["configs"]} == {"default", "soft_labels"}
    assert "dataset-distillation" in data["tags"] and "wmdd" in data["tags"]
    assert data["task_categories"] == ["image-classification"]
    body = card.text
    assert "![Synthetic images, a row per class](synthetic_grid.png)" in body
    assert "| `images_per_class` |" in body  # set by the run; defaults are in wmdd_hf.json, not the card's table
    assert "| `feature_loss` |" not in body and "every argument is in `wmdd_hf.json`" in body
    assert "hf_test_token" not in card.content
    assert "Dataset Distillation via the Wasserstein Metric" in body
    assert 'load_dataset("tester/fmnist-wmdd")' in body.replace(', split="train"', "")


def test_second_push_replaces_the_data_without_stale_files(hub, distilled_run, tmp_path):
    distilled_run.push_to_hub()
    first = set(hub.repos["tester/fmnist-wmdd"].files)
    # a different set in the same repo: other images, hence other content-named shards
    folder = tmp_path / "other"
    import shutil

    shutil.copytree(distilled_run.output_dir / "distilled", folder)
    from wmdd_hf.hub import save_distilled

    meta = json.loads((folder / "wmdd_hf.json").read_text())
    smaller = distilled_run.distilled.select(range(10))
    save_distilled(folder, smaller, {**meta, "arguments": {**meta["arguments"], "soft_label_epochs": 0}})
    push_distilled(folder, "tester/fmnist-wmdd", token=TOKEN)
    files = set(hub.repos["tester/fmnist-wmdd"].files)
    assert not any(p.startswith("soft_labels/") for p in files)
    assert len([p for p in files if p.startswith("data/")]) == 1 and files != first
    assert len(hub.repos["tester/fmnist-wmdd"].commits) == 2
    again = load_dataset("tester/fmnist-wmdd", split="train", token=TOKEN, cache_dir=str(tmp_path / "cache"))
    assert len(again) == 10


def test_bad_repo_id_and_missing_token_fail_before_any_upload(hub, distilled_run):
    with pytest.raises(HubError, match="not a valid Hub dataset id"):
        distilled_run.push_to_hub("no-slash-here")
    with pytest.raises(HubError, match="No valid Hub token"):
        push_distilled(distilled_run.output_dir / "distilled", "tester/other", token="hf_wrong")
    with pytest.raises(HubError, match="No valid Hub token"):  # no token at all
        push_distilled(distilled_run.output_dir / "distilled", "tester/other", token=None)
    assert hub.repos == {}
    assert not [r for r in hub.requests if "preupload" in r[1] and "tester/other" in r[1]]


def test_local_folder_loads_with_plain_load_dataset(distilled_run):
    folder = str(distilled_run.output_dir / "distilled")
    assert _rows(load_dataset(folder, split="train")) == _rows(distilled_run.distilled)
    views = load_dataset(folder, "soft_labels", split="train")
    first = views[3]
    assert first["epoch"] == 0 and first["image_index"] == 3 and len(first["view"]) == 5
    assert len(first["logits"]) == 10 and len(first["box"]) == 4 and 0 <= first["partner"] < 20


def test_loading_needs_no_wmdd_hf(distilled_run, tmp_path):
    """A subprocess that cannot import wmdd_hf still loads the folder with datasets alone."""
    code = (
        "import sys; sys.modules['wmdd_hf'] = None\n"
        "from datasets import load_dataset\n"
        f"ds = load_dataset({str(distilled_run.output_dir / 'distilled')!r}, split='train')\n"
        "print(len(ds), ds.features['label'].names[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["20", "T-shirt/top"]


def test_the_teacher_travels_with_the_set_and_evaluates_it_in_one_line(hub, distilled_run, small_test, tmp_path):
    import shutil

    from wmdd_hf import evaluate_distilled, load_backbone
    from wmdd_hf.hub import bundled_teacher

    folder = distilled_run.output_dir / "distilled"
    assert (folder / "teacher" / "config.json").exists() and list((folder / "teacher").glob("*.safetensors"))
    assert json.loads((folder / "wmdd_hf.json").read_text())["teacher"]["bundled"] == "teacher"
    assert "The teacher travels with the set, in `teacher/`" in (folder / "README.md").read_text()
    distilled_run.push_to_hub()
    assert "teacher/model.safetensors" in hub.repos["tester/fmnist-wmdd"].files
    downloaded = load_backbone(bundled_teacher("tester/fmnist-wmdd"))
    ours = distilled_run.teacher.model.state_dict()
    assert all(torch.equal(v.cpu(), ours[k].cpu()) for k, v in downloaded.model.state_dict().items())
    result = evaluate_distilled("tester/fmnist-wmdd", small_test, steps=3, seeds=(0,), eval_every=3)
    assert result["protocol"]["protocol"] == "soft" and 0.0 <= result["acc_mean"] <= 1.0
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    shutil.rmtree(bare / "teacher")
    with pytest.raises(ValueError, match=r"needs a teacher \(this set carries none in teacher/\)"):
        evaluate_distilled(str(bare), small_test, steps=3, seeds=(0,))


def test_the_cards_train_on_it_snippets_run_as_written(distilled_run, tmp_path, monkeypatch):
    import re

    folder = distilled_run.output_dir / "distilled"
    card = (folder / "README.md").read_text()
    section = card[card.index("## Train on it") : card.index("## Citation")]
    snippets = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(snippets) == 2 and "Do not pass `soft_label` as `labels`" in section
    monkeypatch.chdir(tmp_path)
    for code in snippets:  # the user's copy, pointed at the local folder and shortened to two steps
        assert '"tester/fmnist-wmdd"' in code and "num_train_epochs=200" in code
        code = code.replace('"tester/fmnist-wmdd"', repr(str(folder))).replace("num_train_epochs=200", "max_steps=2")
        exec(compile(code, "card snippet", "exec"), {})
    assert (tmp_path / "student").exists()


def test_the_card_links_a_hub_source_and_names_a_local_folder_as_local(distilled_run, tmp_path):
    from wmdd_hf.hub import render_card

    meta = distilled_run.metadata()
    unknown = render_card({**meta, "source_dataset": "shapes"}, "x/y", None)  # origin not given: no link
    assert "A **distilled** version of `shapes` (train split)" in unknown and "datasets/shapes" not in unknown
    local = render_card({**meta, "source_dataset": "shapes", "source_local": True}, "x/y", None)
    assert "`shapes` (a local folder)" in local and "huggingface.co/datasets/shapes" not in local
    assert "source_datasets" not in local.split("---")[1]
    hub_card = render_card(
        {**meta, "source_dataset": "org/shapes", "source_url": "https://huggingface.co/datasets/org/shapes"},
        "x/y",
        None,
    )
    assert "[org/shapes](https://huggingface.co/datasets/org/shapes)" in hub_card and "source_datasets" in hub_card
    assert "BatchNorm: mean and variance of each input channel" in local  # which norm layers were matched, and how


def test_a_local_sets_card_snippets_name_its_folder_not_a_bare_name(distilled_run, tmp_path):
    from wmdd_hf import save_distilled

    meta = {**distilled_run.metadata(), "repo_id": None}
    meta["arguments"] = {**meta["arguments"], "soft_label_epochs": 0}  # the default config alone
    folder = save_distilled(tmp_path / "out" / "distilled", distilled_run.distilled, meta)
    card = (folder / "README.md").read_text()
    assert f'load_dataset("{folder}", split="train")' in card and 'load_dataset("distilled"' not in card
    assert len(load_dataset(str(folder), split="train")) == len(distilled_run.distilled)


def test_the_set_keeps_the_teachers_logits_so_a_user_picks_the_temperature(distilled_run):
    ds = load_dataset(str(distilled_run.output_dir / "distilled"), split="train")
    logits, soft = torch.tensor(ds["teacher_logits"]), torch.tensor(ds["soft_label"])
    T = distilled_run.args.temperature
    torch.testing.assert_close(torch.softmax(logits / T, 1), soft, atol=1e-3, rtol=0)  # soft_label is float16
    with torch.no_grad():  # the teacher's own logits on the stored images
        from wmdd_hf.evaluation import _as_tensors

        online = distilled_run.teacher(_as_tensors(ds, distilled_run.teacher.spec)[0].float() / 255)[0]
    torch.testing.assert_close(logits, online.cpu(), atol=2e-2, rtol=1e-2)
    card = (distilled_run.output_dir / "distilled" / "README.md").read_text()
    assert "| `teacher_logits` |" in card
