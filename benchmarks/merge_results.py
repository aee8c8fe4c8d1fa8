"""A quality benchmark's results file (benchmarks/results/<dataset>.json): rows merge into it, their
DD-Ranking scores follow, and RESULTS (fashion_mnist.md, benchmarks/report.py) is rewritten beside it. Run as a
script, it merges the results files of parts measured side by side (lanes: copies of the main file, each measuring
other rows) into the main file and benchmarks/results/sweep.json.

    python benchmarks/merge_results.py outputs/lane1/part.json outputs/lane2/part.json
    python benchmarks/report.py                          # then the README's table and figure

A quality part contributes what it measured itself: rows, budgets and full-data references that carry a ``device``
field (older rows copied into it are not taken twice). A row replaces the main file's row of the same key only when
it was measured later (``measured_at``): a part's stale copy of a row that another part has measured since is left
out, whatever the order of the parts; a part's budget brings its ``protocol.steps`` entry along. Rows at an IPC whose
step budget no longer matches are dropped with a message, so the table never mixes budgets. A sweep part
(``{"points": [...]}``) appends its points.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from plain_user import plain_key  # noqa: E402
from report import results_markdown  # noqa: E402
from sweep import render as render_sweep  # noqa: E402

from wmdd_hf.scores import scores  # noqa: E402

RESULTS = HERE / "results"


def read_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"results": []}


def row_key(r: dict) -> tuple:
    return (r["method"], r["ipc"], r["protocol"], r.get("augment", True), r.get("weighted_kd", True), r["student"])


def merge_results(path: Path, payload: dict, rows: list[dict]) -> dict:
    data = read_results(path)
    commands = data.get("commands", [])
    for k, v in payload.items():
        if k == "protocol":
            data.setdefault("protocol", {}).update(v)
        elif k not in ("results", "command"):
            data[k] = v
    if payload.get("command") and payload["command"] not in commands:
        commands.append(payload["command"])
    data["commands"] = commands
    new = {row_key(r): r for r in rows}
    data["results"] = [r for r in data["results"] if row_key(r) not in new] + list(new.values())
    data["results"].sort(key=lambda r: (r["protocol"], r["ipc"], r["method"], not r.get("augment", True)))
    add_scores(data)
    path.write_text(json.dumps(data, indent=2))
    path.with_suffix(".md").write_text(results_markdown(data))
    return data


def add_scores(data: dict) -> None:
    """DD-Ranking scores on every method row (None where an input row is missing)."""

    def acc(method, ipc, protocol, augment=True, weighted=True):
        for r in data["results"]:
            if (r["method"], r["ipc"], r["protocol"], r.get("augment", True)) == (method, ipc, protocol, augment):
                if r.get("weighted_kd", True) == weighted or r["method"] != "wmdd":
                    return r["acc_mean"]
        return None

    full_hard = (data.get("full_data") or {}).get("hard", {}).get("acc_mean")
    for r in data["results"]:
        if r["protocol"] != "soft" or not r.get("augment", True):
            continue
        m, ipc, w = r["method"], r["ipc"], r.get("weighted_kd", True)
        inputs = {  # the names say which row is missing when a score is None
            "random, soft": acc("random", ipc, "soft"),
            "hard labels": acc(m, ipc, "hard"),
            "full data, hard labels": full_hard,
            "no augmentation": acc(m, ipc, "soft", augment=False, weighted=w),
            "random, no augmentation": acc("random", ipc, "soft", augment=False),
        }
        r.update(scores(r["acc_mean"], *inputs.values()))
        own = ("random, soft", "random, no augmentation") if m == "random" else ()  # random's own rows: named once
        r["waiting_for"] = [name for name, value in inputs.items() if value is None and name not in own]


def merge_quality(target: Path, part: dict) -> None:
    data = json.loads(target.read_text())
    current = {row_key(r): r for r in data["results"]}
    rows = [r for r in part.get("results", []) if "device" in r and newer(r, current.get(row_key(r)))]
    payload = {}
    budgets = {ipc: b for ipc, b in part.get("budget", {}).items() if "device" in b}
    if budgets:
        payload["budget"] = {**data.get("budget", {}), **budgets}
        steps = {**data.get("protocol", {}).get("steps", {})}
        steps.update({ipc: part["protocol"]["steps"][ipc] for ipc in budgets})
        payload["protocol"] = {"steps": steps}
    full = {k: v for k, v in (part.get("full_data") or {}).items() if "device" in v}
    if full:
        payload["full_data"] = {**(data.get("full_data") or {}), **full}
    plain = [r for r in part.get("plain_user", []) if "device" in r]
    if plain:
        new = {plain_key(r) for r in plain}
        kept = [r for r in data.get("plain_user", []) if plain_key(r) not in new]
        payload["plain_user"] = kept + plain
    if not (rows or payload):
        return
    merge_results(target, payload, rows)
    data = json.loads(target.read_text())
    data["commands"] = sorted(set(data.get("commands", [])) | set(part.get("commands", [])))
    target.write_text(json.dumps(data, indent=2))


def newer(row: dict, old: dict | None) -> bool:
    """Whether a part's ``row`` should replace the main file's ``old`` row of the same key: there is none, ``row``
    was measured later, or (rows from before ``measured_at`` existed) neither has a time and they differ."""
    if old is None:
        return True
    when, was = row.get("measured_at", ""), old.get("measured_at", "")
    return when > was if (when or was) else row != old


def drop_stale_rows(target: Path) -> None:
    data = json.loads(target.read_text())
    steps = {int(k): v for k, v in data.get("protocol", {}).get("steps", {}).items()}
    keep = []
    for r in data["results"]:
        if r["ipc"] in steps and r["steps"] != steps[r["ipc"]]:
            print(f"dropped (budget {r['steps']} != {steps[r['ipc']]}): {r['method']} IPC {r['ipc']} {r['protocol']}")
            continue
        keep.append(r)
    data["results"] = keep
    target.write_text(json.dumps(data, indent=2))
    merge_results(target, {}, [])  # re-scores and re-renders the Markdown


def merge_sweep(target: Path, part: dict) -> None:
    data = json.loads(target.read_text()) if target.exists() else {"points": []}
    seen = {json.dumps(p, sort_keys=True) for p in data["points"]}
    data["points"] += [p for p in part["points"] if json.dumps(p, sort_keys=True) not in seen]
    data["commands"] = sorted(set(data.get("commands", [])) | set(part.get("commands", [])))
    data["protocol"] = part.get("protocol", data.get("protocol"))
    target.write_text(json.dumps(data, indent=2))
    target.with_suffix(".md").write_text(render_sweep(data))


def main() -> None:
    sweep = RESULTS / "sweep.json"
    import shutil

    targets = set()
    for path in sys.argv[1:]:
        part = json.loads(Path(path).read_text())
        dataset = part.get("dataset", "fashion_mnist")  # each benchmark's parts merge into its own file
        curves = "curves" if dataset == "fashion_mnist" else f"curves-{dataset}"
        for png in sorted((Path(path).parent / curves).glob("*.png")):  # a part's curves, beside its file
            (RESULTS / curves).mkdir(exist_ok=True)
            shutil.copy(png, RESULTS / curves / png.name)
        if "points" in part:
            merge_sweep(sweep, part)
        elif "results" in part:
            quality = RESULTS / f"{dataset}.json"
            if not quality.exists():
                quality.write_text(json.dumps({**part, "results": []}, indent=2))
            merge_quality(quality, part)
            targets.add(quality)
    for quality in targets:
        drop_stale_rows(quality)


if __name__ == "__main__":
    main()
