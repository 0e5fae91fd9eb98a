"""The panels the page makes from a run's description, in a real browser (Debian's chromium, headless, driven by
Playwright) against a real server on loopback: upload a WAV to a speech run, a GIF to a video run and an image to
a captioning run, type a sequence for the adding problem; press Run and find the answer the API gives, and the
picture of why (a PNG that loaded, with a size). One page for the module; the runs are trained once a session."""

from __future__ import annotations

import os

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'dnn[serve]'")
from dnn.serve import create_app, serve_in_thread  # noqa: E402

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
)
from serve_browser import CHROMIUM, launch  # noqa: E402
from serve_kinds import ADDING_EXAMPLE, KINDS, js_number, kind_runs  # noqa: E402

PICTURE_LOADED = """() => {
  const img = document.getElementById("run-picture");
  return img.src.startsWith("data:image/png;base64,") && img.complete && img.naturalWidth > 0;
}"""


@pytest.fixture(scope="session")
def kinds(tmp_path_factory):
    return kind_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def page(kinds):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    errors: list[str] = []
    with serve_in_thread(create_app(kinds.all)) as base, playwright_api.sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_default_timeout(30_000)
        page.goto(base)
        page.wait_for_selector("#run:not([disabled])")
        page.base = base
        yield page
        browser.close()
    unexpected = [e for e in errors if "status of 422" not in e]  # the 422 of the option test
    assert not unexpected, unexpected  # no script error, no missing or blocked resource (content security policy)


def api_run(page, name: str, body: dict) -> dict:
    r = httpx.post(f"{page.base}/runs/{name}/run", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def press_run(page) -> str:
    """Press Run and wait for the answer's row; its main line."""
    page.locator("#run-rows").evaluate("rows => rows.replaceChildren()")
    page.click("#run-form button")
    page.wait_for_selector("#run-rows .run-row")
    return page.inner_text("#run-rows .row-main")


def upload_and_run(page, name: str, path) -> str:
    page.select_option("#run", name)
    assert page.locator("#panel-run").is_visible() and page.locator("#run-file").is_visible()
    page.set_input_files("#run-file", str(path))
    shown = press_run(page)
    assert page.inner_text("#run-rows .row-input") == path.name
    page.wait_for_function(PICTURE_LOADED)  # the explanation: a PNG the browser decoded, of some size
    assert page.locator("#run-explanation").is_visible()
    box = page.locator("#run-picture").bounding_box()
    assert box["width"] > 50 and box["height"] > 50
    return shown


def file_input(path) -> dict:
    import base64

    return {"file": base64.b64encode(path.read_bytes()).decode(), "name": path.name}


def test_every_new_run_gets_a_panel_made_from_its_description(page):
    options = page.locator("#run option").all_inner_texts()
    assert [o.split(" — ")[0] for o in options] == list(KINDS)
    accept = {"caption": "image/*", "video": ".gif,.npy", "speech": ".wav,.flac,.ogg"}
    for name in KINDS:
        page.select_option("#run", name)
        assert page.locator("#panel-run").is_visible()
        for other in ("translate", "classify", "tag", "image", "generate"):
            assert not page.locator(f"#panel-{other}").is_visible()
        if name in accept:
            assert page.get_attribute("#run-file", "accept") == accept[name]
        else:
            assert page.input_value("#run-text") == ADDING_EXAMPLE
    page.select_option("#run", "speech")
    beam = page.locator('#run-options input[data-option="beam_size"]')
    assert (beam.get_attribute("type"), beam.get_attribute("min"), beam.get_attribute("max")) == ("number", "1", "16")
    assert beam.input_value() == "1"
    page.select_option("#run", "caption")
    assert page.locator("#run-options [data-option]").count() == 2


def test_a_wav_is_transcribed_with_its_alignment(page, kinds):
    shown = upload_and_run(page, "speech", kinds.files.wav)
    want = api_run(page, "speech", {"inputs": [file_input(kinds.files.wav)]})["rows"][0]
    assert shown == (want["text"] or "(nothing recognised)")
    assert "spectrogram" in page.inner_text("#run-explains")


def test_a_gif_is_classified_with_its_frames(page, kinds, tmp_path):
    shown = upload_and_run(page, "video", kinds.files.gif)
    want = api_run(page, "video", {"inputs": [file_input(kinds.files.gif)]})["rows"][0]
    assert shown == f"{want['label']} ({js_number(want['probability'])})"
    page.screenshot(path=tmp_path / "video.png", full_page=True)


def test_an_image_is_captioned_with_each_words_attention(page, kinds):
    shown = upload_and_run(page, "caption", kinds.files.png)
    want = api_run(page, "caption", {"inputs": [file_input(kinds.files.png)]})["rows"][0]
    assert shown == (want["caption"] or "(empty caption)")
    assert "attention" in page.inner_text("#run-explains")


def test_a_typed_sequence_is_summed_by_the_adding_run(page):
    page.select_option("#run", "adding")
    page.fill("#run-text", "0.9* 0.2 0.4* 0.1")
    shown = press_run(page)
    want = api_run(page, "adding", {"inputs": ["0.9* 0.2 0.4* 0.1"]})["rows"][0]
    assert shown == f"predicted {js_number(want['prediction'])} · target {js_number(want['target'])}"
    assert want["target"] == 1.3 and page.locator("#run-explanation").is_hidden()  # it explains nothing


def test_an_option_out_of_range_is_shown_in_one_line(page, kinds):
    page.select_option("#run", "speech")
    page.set_input_files("#run-file", str(kinds.files.wav))
    page.fill('#run-options input[data-option="beam_size"]', "99")
    page.click("#run-form button")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "422: --beam-size: must be an integer from 1 to 16, got 99"
    page.fill('#run-options input[data-option="beam_size"]', "2")  # a changed option is sent, and taken
    page.click("#run-form button")
    page.wait_for_selector("#error[hidden]", state="attached")
    page.wait_for_selector("#run-rows .run-row")
