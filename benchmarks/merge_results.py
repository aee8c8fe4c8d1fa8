"""Merge the results files of benchmark parts run side by side (e.g. the lanes of benchmarks/device_checks.sh) into
benchmarks/results/fashion_mnist.{json,md} and benchmarks/results/sweep.{json,md}.

    python benchmarks/merge_results.py outputs/device-results/*.json

A quality part contributes what it measured itself: rows, budgets and full-data references that carry a ``device``
field (parts start as copies of the main file, so older rows in them are not taken twice). A row replaces the main
file's row of the same key only when it was measured later (``measured_at``): a part's stale copy of a row that
another part has measured since is left out, whatever the order of the parts; a part's budget brings
its ``protocol.steps`` entry along. Rows at an IPC whose step budget no longer matches are dropped with a message,
so the table never mixes budgets. A sweep part (``{"points": [...]}``) appends its points.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_user import plain_key  # noqa: E402
from quality import RESULTS, merge_results, row_key  # noqa: E402
from sweep import render as render_sweep  # noqa: E402


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
    quality, sweep = RESULTS / "fashion_mnist.json", RESULTS / "sweep.json"
    import shutil

    for path in sys.argv[1:]:
        for png in sorted((Path(path).parent / "curves").glob("*.png")):  # a part's curves, beside its file
            (RESULTS / "curves").mkdir(exist_ok=True)
            shutil.copy(png, RESULTS / "curves" / png.name)
        part = json.loads(Path(path).read_text())
        if "points" in part:
            merge_sweep(sweep, part)
        elif "results" in part:
            merge_quality(quality, part)
    drop_stale_rows(quality)


if __name__ == "__main__":
    main()
