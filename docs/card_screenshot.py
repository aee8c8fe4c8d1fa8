"""Renders a distilled set's dataset card as a web page and screenshots it with headless Chromium.

    python docs/card_screenshot.py outputs/wmdd-fashion-mnist-ipc10/distilled docs/card.png

The YAML header is dropped (the Hub shows it as tags); the body is rendered with Python-Markdown (tables, fenced
code) and a plain stylesheet close to the Hub's, the card's own picture beside it. Needs ``chromium`` on the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import markdown

STYLE = """
body { font-family: 'DejaVu Sans', sans-serif; max-width: 900px; margin: 24px auto; color: #1f2328; font-size: 14px;
       line-height: 1.5; }
h1, h2, h3 { border-bottom: 1px solid #d1d9e0; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #d1d9e0; padding: 4px 10px; }
code { background: #f0f2f4; padding: 1px 4px; border-radius: 4px; font-size: 12px; }
pre { background: #f6f8fa; padding: 10px; overflow-x: auto; } pre code { background: none; padding: 0; }
img { max-width: 100%; }
"""


def main() -> None:
    folder, out = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
    text = (folder / "README.md").read_text()
    body = text.split("---", 2)[2] if text.startswith("---") else text
    html = markdown.markdown(body, extensions=["tables", "fenced_code"])
    with tempfile.TemporaryDirectory() as tmp:
        for picture in folder.glob("*.png"):
            shutil.copy(picture, Path(tmp) / picture.name)
        page = Path(tmp) / "card.html"
        page.write_text(f"<html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>{html}</body></html>")
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={out}",
                "--window-size=1000,3600",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    from PIL import Image, ImageChops

    page = Image.open(out).convert("RGB")  # cut the empty space below the card
    box = ImageChops.difference(page, Image.new("RGB", page.size, "white")).getbbox()
    page.crop((0, 0, page.width, min(page.height, box[3] + 24))).quantize(256).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
