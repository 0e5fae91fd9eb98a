"""The page in a real browser (Debian's chromium, headless, driven by Playwright) against a real server on
loopback: translate a sentence and find one heatmap cell per (source, target) token pair, draw a digit and
classify it, classify a text, generate text; a screenshot goes into the test's folder."""

from __future__ import annotations

import os

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from dnn.serve import create_app, serve_in_thread  # noqa: E402

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
from serve_browser import CHROMIUM, SEVEN, draw_digit, launch, translate  # noqa: E402


@pytest.fixture(scope="module")
def page(all_runs):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    errors: list[str] = []
    with serve_in_thread(create_app(all_runs)) as base, playwright_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(30_000)
        page.goto(base)
        page.wait_for_selector("#run:not([disabled])")
        page.base, page.errors = base, errors
        yield page
        browser.close()
    unexpected = [e for e in errors if "status of 422" not in e]  # the 422 of test_an_error_is_shown_in_one_line
    assert not unexpected, unexpected  # no script error, no missing or blocked resource (content security policy)


def test_the_page_lists_every_run(page):
    options = page.locator("#run option").all_inner_texts()
    assert [o.split(" — ")[0] for o in options] == ["dates", "digits", "charlm", "sentiment", "tagger"]
    assert page.locator("#panel-translate").is_visible()  # the first run is chosen


def test_translation_draws_one_heatmap_cell_per_token_pair(page, tmp_path):
    text = "March 3, 2021"
    translate(page, text)
    want = httpx.post(f"{page.base}/runs/dates/translate", json={"text": text, "beam_size": 5}, timeout=30).json()
    assert page.inner_text("#translate-output") == want["output"]
    n_source, n_output = len(want["source_tokens"]), len(want["output_tokens"])
    assert page.locator("#heatmap .cell").count() == n_source * n_output
    assert page.locator("#heatmap .col-label").count() == n_source
    assert page.locator("#heatmap .row-label").count() == n_output
    cell = page.locator("#heatmap .cell").nth(n_source + 2)  # output token 2, source token 3
    cell.hover()
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible")
    weight = f"{want['attention'][1][2]:.4f}"
    assert cell.get_attribute("data-weight") == weight and weight in tooltip.inner_text()
    page.screenshot(path=tmp_path / "translate.png", full_page=True)
    assert (tmp_path / "translate.png").stat().st_size > 10_000


def test_a_drawn_digit_is_classified_with_probabilities_and_feature_maps(page, tmp_path):
    page.select_option("#run", "digits")
    assert page.locator("#panel-image").is_visible() and not page.locator("#panel-translate").is_visible()
    draw_digit(page, SEVEN)
    page.click("#pad-classify")
    page.wait_for_selector("#maps canvas")
    assert page.inner_text("#image-output").startswith("prediction: ")
    label = page.inner_text("#image-output").split()[1]
    assert label in [str(i) for i in range(10)]
    values = [float(v) for v in page.locator("#image-bars .bar-value").all_inner_texts()]
    assert len(values) == 10 and abs(sum(values) - 1) < 0.01
    assert page.inner_text("#image-bars .top .bar-label") == label
    assert page.locator("#maps canvas").count() == 6  # LeNet-5's C1
    assert "6 feature maps of 28×28" in page.inner_text("#maps-caption")
    page.screenshot(path=tmp_path / "digit.png", full_page=True)
    assert (tmp_path / "digit.png").stat().st_size > 10_000


def test_an_uploaded_image_is_classified_like_the_api_classifies_it(page, tmp_path, digit_png):
    import base64

    page.select_option("#run", "digits")
    (tmp_path / "three.png").write_bytes(base64.b64decode(digit_png))
    want = httpx.post(f"{page.base}/runs/digits/predict", json={"image": digit_png}, timeout=30).json()
    with page.expect_response(lambda r: r.url.endswith("/runs/digits/predict")) as answer:
        page.set_input_files("#upload", str(tmp_path / "three.png"))
    assert answer.value.status == 200
    expected = f"prediction: {want['label']} ({want['probability']:.3f})"
    playwright_api.expect(page.locator("#image-output")).to_have_text(expected)
    shown = [float(v) for v in page.locator("#image-bars .bar-value").all_inner_texts()]
    assert shown == [round(p, 3) for p in want["probabilities"]]


def test_text_classification_and_generation_panels(page):
    page.select_option("#run", "sentiment")
    page.fill("#classify-text", "a great film")
    page.click("#classify-form button")
    page.wait_for_selector("#classify-bars .bar-row")
    assert page.locator("#classify-bars .bar-label").all_inner_texts() == ["neg", "pos"]
    page.select_option("#run", "charlm")
    page.fill("#generate-prompt", "The ")
    page.locator("#temperature").fill("0")
    page.click("#generate-form button")
    page.wait_for_selector("#generate-output .continuation")
    want = httpx.post(f"{page.base}/runs/charlm/generate", json={"prompt": "The ", "length": 200, "temperature": 0},
                      timeout=30).json()  # fmt: skip
    assert page.inner_text("#generate-output") == want["text"]


def test_an_error_is_shown_in_one_line(page):
    page.select_option("#run", "dates")
    page.fill("#translate-text", "   ")
    page.click("#translate-form button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "422: text: empty input, expected some text"
