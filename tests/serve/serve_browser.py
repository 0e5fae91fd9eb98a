"""Debian's chromium driven by Playwright (never a downloaded browser), for the browser test and the README's
screenshot: ``python tests/serve/serve_browser.py RUN... --out docs/images/serve.png``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
        "--disable-component-update", "--disable-sync"]  # fmt: skip


def launch(playwright):
    """Headless chromium from ``CHROMIUM``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


def translate(page, text: str) -> None:
    """Pick the dates run, translate ``text`` and wait for the heatmap."""
    page.select_option("#run", "dates")
    page.fill("#translate-text", text)
    page.click("#translate-form button")
    page.wait_for_selector("#heatmap .cell")


def draw_digit(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw ``strokes`` (points in [0, 1]² of the pad) with the mouse."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=4)
        page.mouse.up()


SEVEN = [[(0.25, 0.2), (0.75, 0.2), (0.45, 0.85)]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories; one must be named dates (a seq2seq run)")
    parser.add_argument("--out", default="docs/images/serve.png")
    parser.add_argument("--text", default="the 7th of April, 1957")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from playwright.sync_api import sync_playwright

    from dnn.serve import create_app, serve_in_thread

    with serve_in_thread(create_app(args.runs)) as base, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1000, "height": 940}, device_scale_factor=1)
        page.goto(base)
        page.wait_for_selector("#run:not([disabled])")
        translate(page, args.text)
        page.click("#curves-button")
        page.wait_for_selector("#curves svg")
        cells = page.locator("#heatmap .cell")
        weights = [float(w) for w in cells.evaluate_all("cells => cells.map(c => c.dataset.weight)")]
        n_source = page.locator("#heatmap .col-label").count()
        row = 2  # the third output token: the hovered cell is where it looks most
        column = max(range(n_source), key=lambda j: weights[row * n_source + j])
        cells.nth(row * n_source + column).hover()
        time.sleep(0.2)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
