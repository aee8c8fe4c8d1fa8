"""Merge result files of benchmark parts run side by side into benchmarks/results/fashion_mnist.json (and .md).

python benchmarks/merge_results.py outputs/part_ipc50.json
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import RESULTS, check_targets, merge_results, render_markdown  # noqa: E402


def main() -> None:
    target = RESULTS / "fashion_mnist.json"
    for part in sys.argv[1:]:
        data = json.loads(Path(part).read_text())
        payload = {k: v for k, v in data.items() if k not in ("results", "targets", "commands")}
        merge_results(target, payload, data["results"])
    merged = json.loads(target.read_text())
    merged["targets"] = check_targets(merged)
    target.write_text(json.dumps(merged, indent=2))
    target.with_suffix(".md").write_text(render_markdown(merged))


if __name__ == "__main__":
    main()
