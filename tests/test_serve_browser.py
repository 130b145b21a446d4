"""`merkit serve` used as a person would, in headless Chromium: drop clips, wait, read, compare.

The server runs under uvicorn on 127.0.0.1 and a free port. With MERKIT_SCREENSHOTS=DIR the
predict page's screenshot is kept there (README's docs/serve-predict.png comes from this test).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from browser import chromium_driver, require_programs
from experiments import experiment
from inference_fixtures import CLEAR
from merkit.inference import Predictor
from merkit.preprocess.pipeline import PrepareConfig
from merkit.serve import ServeConfig, create_app
from merkit.synthetic.dataset import generate_casme2_like
from merkit.training.fit import fit_final
from merkit.training.recipe import AugmentConfig, Recipe
from serve_fixtures import blank_zip, live_server, tree, write_clip, write_runs

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow, pytest.mark.timeout(300)]

WAIT_S = 60  # for one clip to be analysed on a loaded machine
LIMIT_MB = 2.0
SCREENSHOTS = "MERKIT_SCREENSHOTS"
MODEL = "synthetic-cabm.pt"  # its label: its path under --runs


@dataclasses.dataclass
class Site:
    url: str
    root: Path  # everything the tests wrote
    runs: Path
    uploads: Path
    model: Path  # a small model trained on synthetic clips, under runs/
    clips: dict[str, Path]


def trained_model(data: Path, out: Path) -> Path:
    """A small cabm fitted on clear synthetic clips (seconds), so the page shows a real answer."""
    config = dataclasses.replace(CLEAR, n_subjects=4, clips_per_subject=6, n_frames=16)
    root = generate_casme2_like(data, config)
    recipe = Recipe(model="cabm", model_kwargs={"dim": 16, "depth": 2}, epochs=40, batch_size=16,
                    lr=3e-3, weight_decay=0.01, augment=AugmentConfig())  # fmt: skip
    fit_final(experiment("casme2", root, recipe, PrepareConfig(flow="dis")), out=out,
              progress=False)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_programs("chromium", "chromedriver")  # skip (or fail in CI) before any work
    root = tmp_path_factory.mktemp("serve")
    runs, uploads = write_runs(root / "runs"), root / "uploads"
    uploads.mkdir()
    bad = root / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    clips = {e: write_clip(root / f"{e}.mp4", e, subject=20 + i)
             for i, e in enumerate(("surprise", "happiness"))}  # fmt: skip
    big = root / "long.mp4"
    big.write_bytes(os.urandom(int(LIMIT_MB * 1e6) + 300_000))
    clips |= {"big": big, "notes": root / "notes.txt", "blank": blank_zip(root / "blank.zip")}
    clips["notes"].write_text("not a clip")
    model = trained_model(root / "synthetic", runs / "synthetic-cabm.pt")  # found under --runs
    config = ServeConfig(runs=runs, models=(bad,), max_upload_mb=LIMIT_MB, upload_dir=uploads)
    with live_server(create_app(config)) as url:
        yield Site(url, root, runs, uploads, model, clips)


@pytest.fixture(scope="module")
def browser(site: Site):  # -> selenium.webdriver.Chrome
    driver = chromium_driver(site.root / "downloads")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser, condition, seconds: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, seconds, poll_frequency=0.1).until(condition)


def by_id(browser, name: str):
    return browser.find_element("id", name)


def open_predict(browser, site: Site, model: str, aligned: bool) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(site.url + "/")
    wait_for(browser, lambda b: len(b.find_elements("css selector", "#model option")) == 3)
    Select(by_id(browser, "model")).select_by_visible_text(model)
    if by_id(browser, "aligned").is_selected() != aligned:
        by_id(browser, "aligned").click()


def drop(browser, *files: Path) -> None:
    by_id(browser, "file").send_keys("\n".join(str(f) for f in files))


def finished_cards(browser, count: int) -> list:
    def ready(b):
        cards = b.find_elements("css selector", "#jobs li")
        states = [c.find_element("css selector", ".job-status").text for c in cards]
        done = [s for s in states if s.startswith("done") or s == "failed"]
        return cards if len(cards) == count and len(done) == count else False

    return wait_for(browser, ready)


def image_loaded(browser, element_id: str) -> bool:
    script = "const i = document.getElementById(arguments[0]); return i.complete && i.naturalWidth;"
    return bool(browser.execute_script(script, element_id))


def screenshot(browser, name: str, fallback: Path) -> Path:
    """The whole page as PNG: into $MERKIT_SCREENSHOTS when set (docs/), else `fallback`."""
    folder = Path(os.environ.get(SCREENSHOTS) or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    path = folder / name
    path.write_bytes(
        base64.b64decode(browser.execute_cdp_cmd("Page.captureScreenshot", options)["data"])
    )
    return path


def test_a_dropped_clip_shows_when_and_what(browser, site: Site) -> None:
    clip = site.clips["surprise"]
    expected = Predictor.load(site.model).predict(clip, aligned=True)
    open_predict(browser, site, MODEL, aligned=True)
    drop(browser, clip)
    card = finished_cards(browser, 1)[0]
    assert card.find_element("css selector", ".job-status").text.startswith("done"), card.text
    chips = card.find_elements("css selector", ".stage.done")
    assert [c.text for c in chips] == ["read", "face", "spotting", "flow", "classify", "pictures"]
    wait_for(browser, lambda b: by_id(b, "result").is_displayed())

    assert by_id(browser, "apex").text == str(expected["apex"])
    assert by_id(browser, "onset").text == str(expected["onset"])
    assert by_id(browser, "top-class").text == expected["predicted"]
    assert abs(expected["apex"] - 45) <= 3 and expected["predicted"] == "surprise"  # the truth
    bars = browser.find_elements("css selector", "#bars .bar")
    assert [b.get_attribute("data-class") for b in bars] == list(expected["probabilities"])
    top = browser.find_element("css selector", "#bars .bar.top")
    assert top.get_attribute("data-class") == expected["predicted"]
    for name in ("img-face", "img-flow", "img-input", "img-attention", "frame"):
        wait_for(browser, lambda b, n=name: image_loaded(b, n), 20)
    assert by_id(browser, "mark-apex").text == f"apex {expected['apex']}"
    path = browser.find_element("css selector", "#curve path.line").get_attribute("d")
    assert path.startswith("M") and len(path.split()) == expected["frames"]  # a point per frame

    shot = screenshot(browser, "serve-predict.png", site.root / "screenshots")
    assert shot.read_bytes()[:4] == b"\x89PNG"

    # The slider starts on the apex; one step right shows the next frame.
    assert by_id(browser, "frame-number").text == f"{expected['apex']} (apex)"
    before = by_id(browser, "frame").get_attribute("src")
    from selenium.webdriver.common.keys import Keys

    by_id(browser, "slider").send_keys(Keys.ARROW_RIGHT)
    assert by_id(browser, "frame-number").text == str(expected["apex"] + 1)
    assert by_id(browser, "frame").get_attribute("src") != before
    wait_for(browser, lambda b: image_loaded(b, "frame"), 20)

    # The download is the JSON `merkit predict` writes.
    fetch = "fetch(arguments[0]).then(r => r.text()).then(arguments[arguments.length - 1]);"
    text = browser.execute_async_script(fetch, by_id(browser, "download").get_attribute("href"))
    result = json.loads(text)
    assert result["input"] == clip.name and result["apex"] == expected["apex"]
    assert set(result) == set(expected)


def test_several_clips_queue_and_each_can_be_shown(browser, site: Site) -> None:
    open_predict(browser, site, MODEL, aligned=True)
    drop(browser, site.clips["happiness"], site.clips["surprise"])
    cards = finished_cards(browser, 2)
    assert [c.find_element("css selector", ".job-name").text for c in cards] == [
        "happiness.mp4", "surprise.mp4"
    ]  # fmt: skip
    for card in cards:
        card.click()
        name = card.find_element("css selector", ".job-name").text
        wait_for(browser, lambda b, n=name: by_id(b, "result-title").text.startswith(n))
        assert "shown" in card.get_attribute("class")
    assert by_id(browser, "top-class").text == "surprise"  # the one shown last


def test_bad_inputs_are_said_on_the_page(browser, site: Site) -> None:
    open_predict(browser, site, MODEL, aligned=False)
    drop(browser, site.clips["notes"], site.clips["big"], site.clips["blank"])
    cards = finished_cards(browser, 3)
    errors = [c.find_element("css selector", ".job-error").text for c in cards]
    assert errors[0].startswith("notes.txt: not a video (.mp4") and errors[0].endswith("(HTTP 415)")
    assert "is over the 2.0 MB upload limit" in errors[1] and errors[1].endswith("(HTTP 413)")
    assert "blank.zip (frame 1): no face found" in errors[2] and errors[2].endswith("(HTTP 422)")

    open_predict(browser, site, str(site.root / "broken.pt"), aligned=True)
    drop(browser, site.clips["surprise"])
    error = finished_cards(browser, 1)[0].find_element("css selector", ".job-error").text
    assert f"model {site.root / 'broken.pt'} does not load" in error and "HTTP 422" in error
    assert "Traceback" not in browser.page_source
    assert list(site.uploads.iterdir()) == []  # every upload folder is gone


def test_runs_page_opens_a_run_and_compares_two(browser, site: Site) -> None:
    before = tree(site.runs)
    browser.get(site.url + "/runs")
    rows = wait_for(browser, lambda b: b.find_elements("css selector", "#runs tbody tr"))
    assert [r.get_attribute("data-run") for r in rows] == [
        "cabm-loso", "nested/cabm-kfold", "unfinished"
    ]  # fmt: skip
    assert "0.7222" in rows[0].text and "leaks subjects" in rows[1].text
    assert "no data.class_names recorded" in rows[2].text

    browser.find_element("link text", "cabm-loso").click()
    wait_for(browser, lambda b: b.find_element("tag name", "h1").text == "merkit run: cabm-loso")
    assert "Per subject" in browser.page_source
    assert image_loaded_by_css(browser, "img[alt='confusion matrix']")

    browser.back()
    wait_for(browser, lambda b: b.find_elements("css selector", "#runs tbody tr"))
    assert not by_id(browser, "compare").is_enabled()
    for run in ("cabm-loso", "nested/cabm-kfold"):
        browser.find_element("css selector", f"input[value='{run}']").click()
    by_id(browser, "compare").click()
    heading = "merkit comparison of 2 runs"
    wait_for(browser, lambda b: b.find_element("tag name", "h1").text == heading)
    rows = browser.find_elements("css selector", "tbody tr")
    assert len(rows) == 2 and "leak" in rows[1].get_attribute("class")
    assert tree(site.runs) == before  # nothing was written into --runs


def image_loaded_by_css(browser, selector: str) -> bool:
    script = "const i = document.querySelector(arguments[0]); return i.complete && i.naturalWidth;"
    return bool(browser.execute_script(script, selector))


def hostile_site(target: str, model: str):  # -> a Starlette app
    """Another web site (another port: another origin) whose page sends the server an upload
    of a clip for `model` (an id it guessed) as any page can: a no-cors fetch, a plain form."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    page = f"""<!DOCTYPE html><html><head><title>hostile</title></head><body>
<form id="form" method="post" action="{target}/api/jobs" enctype="multipart/form-data">
<input name="model" value="{model}"><input name="aligned" value="1"></form>
<script>
const form = new FormData();
form.append("model", "{model}");
form.append("file", new Blob(["not a clip"]), "clip.mp4");
fetch("{target}/api/jobs", {{method: "POST", body: form, mode: "no-cors"}})
  .finally(() => {{ document.title = "sent"; }});
</script></body></html>"""
    return Starlette(routes=[Route("/", lambda _: HTMLResponse(page))])


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_another_site_cannot_upload_through_the_browser(browser, site: Site) -> None:
    jobs = get_json(site.url + "/api/jobs")
    model = get_json(site.url + "/api/config")["models"][0]["id"]
    with live_server(hostile_site(site.url, model)) as hostile:
        browser.get(hostile + "/")
        wait_for(browser, lambda b: b.title == "sent")
        browser.execute_script("document.getElementById('form').submit();")
        wait_for(browser, lambda b: b.current_url.startswith(site.url))
        assert f"a request from {hostile} is refused" in browser.page_source
    assert get_json(site.url + "/api/jobs") == jobs
    assert list(site.uploads.iterdir()) == []


def test_the_reports_are_styled_under_the_content_security_policy(browser, site: Site) -> None:
    """No inline style runs under the policy: the report's stylesheet is linked, and applies."""
    browser.get(site.url + "/runs/report?run=cabm-loso")
    heading = wait_for(browser, lambda b: b.find_element("tag name", "h1"))
    assert heading.value_of_css_property("border-bottom-style") == "solid"
    browser.get(site.url + "/")
    header = wait_for(browser, lambda b: b.find_element("tag name", "header"))
    assert header.value_of_css_property("background-color") == "rgba(29, 36, 48, 1)"
