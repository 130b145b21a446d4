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
from merkit.inference.checkpoint import read_meta
from merkit.preprocess.pipeline import PrepareConfig
from merkit.serve import ServeConfig, create_app
from merkit.serve.app import BACK
from merkit.serve.catalog import describe
from merkit.synthetic.dataset import generate_casme2_like
from merkit.training.fit import fit_final
from merkit.training.recipe import AugmentConfig, Recipe
from serve_fixtures import blank_zip, live_server, tree, write_clip, write_runs
from test_report import CLASSES

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow, pytest.mark.timeout(300)]

MOMENTS = ("onset", "apex", "offset")
WAIT_S = 60  # for one clip to be analysed on a loaded machine
LIMIT_MB = 2.0
SCREENSHOTS = "MERKIT_SCREENSHOTS"
MODEL = "synthetic-cabm.pt"  # its file's path under --runs


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
    """The predict page with the model whose file is `model` chosen (as its menu shows it)."""
    from selenium.webdriver.support.ui import Select

    browser.get(site.url + "/")
    wait_for(browser, lambda b: len(b.find_elements("css selector", "#model option")) == 3)
    texts = [o.text for o in browser.find_elements("css selector", "#model option")]
    Select(by_id(browser, "model")).select_by_visible_text(
        next(t for t in texts if t.endswith(f" — {model}"))
    )
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

    # The answer in plain words first: the class, how sure, when; internals only on request.
    verdict = f"{expected['predicted']}, probability {expected['confidence']:.2f} (next: "
    assert by_id(browser, "verdict").text.startswith(verdict)
    fps = expected["spotting"]["fps"]
    first = expected["first_frame"]
    when = [
        f"{k} frame {expected[k]} ({1000 * (expected[k] - first) / fps:.0f} ms)" for k in MOMENTS
    ]
    lasts = 1000 * (expected["offset"] - expected["onset"]) / fps
    sentence = f"{', '.join(when)}; the movement lasts {lasts:.0f} ms."
    assert by_id(browser, "when").text == sentence[0].upper() + sentence[1:]
    assert abs(expected["apex"] - 45) <= 3 and expected["predicted"] == "surprise"  # the truth
    assert not by_id(browser, "rate").is_displayed()  # the video states its rate
    body = browser.find_element("tag name", "body")
    for internal in ("fps_assumed", "noise 0.", "predict's spotting", "confidence 0."):
        assert internal not in body.text, internal
    assert not by_id(browser, "detail-list").is_displayed()  # until asked for (below)
    title = by_id(browser, "result-title").text
    assert title == f"{clip.name} — {describe(read_meta(site.model))}"
    bars = browser.find_elements("css selector", "#bars .bar")
    assert [b.get_attribute("data-class") for b in bars] == list(expected["probabilities"])
    top = browser.find_element("css selector", "#bars .bar.top")
    assert top.get_attribute("data-class") == expected["predicted"]
    for name in ("img-face", "img-flow", "img-input", "img-attention", "frame"):
        wait_for(browser, lambda b, n=name: image_loaded(b, n), 20)
    assert by_id(browser, "mark-apex").text == f"apex {expected['apex']}"
    path = browser.find_element("css selector", "#curve path.line").get_attribute("d")
    assert path.startswith("M") and len(path.split()) == expected["frames"]  # a point per frame

    # The maps say what their colours mean; the attention (cabm's CBAM) says its scale.
    scale = by_id(browser, "input-scale")
    assert scale.is_displayed() and scale.size["width"] > 200 and scale.text.split() == ["0", "1"]
    assert "linear-gradient" in scale.value_of_css_property("background-image")
    legend = browser.find_element("css selector", "#fig-input dl.legend").text
    assert "u\nsideways motion: 0 the most leftward" in legend and "strain" in legend
    flow = by_id(browser, "caption-flow").text
    assert "times longer than the motion" in flow and " px of the 128-px face" in flow
    attention = by_id(browser, "caption-attention").text
    assert "spatial attention (CBAM)" in attention and "0 (blue, suppressed)" in attention
    assert by_id(browser, "fig-attention").is_displayed()

    shot = screenshot(browser, "serve-predict.png", site.root / "screenshots")
    assert shot.read_bytes()[:4] == b"\x89PNG"

    # How it was found, in words, behind a disclosure.
    browser.find_element("css selector", "#details summary").click()
    details = by_id(browser, "detail-list").text
    confidence = expected["spotting"]["confidence"]
    assert f"spotting confidence\n{confidence:.2f} of 1:" in details
    assert "the spotting's, not the class's" in details and "motion noise" in details

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


MARK_BOXES = """
const [onset, apex, offset] = arguments[0];
const numbers = [...Array(100).keys()];
document.getElementById("result").hidden = false;
drawCurve({ views: { numbers, curve: numbers.map(() => 0) }, result: { onset, apex, offset } });
const inside = document.getElementById("curve").getBoundingClientRect();
return ["onset", "apex", "offset"].map((name) => {
  const box = document.getElementById(`mark-${name}`).getBoundingClientRect();
  return [box.left, box.top, box.right, box.bottom, inside.left, inside.right];
});
"""


def test_the_curves_labels_never_overlap(browser, site: Site) -> None:
    """Onset, apex and offset labels on the page's curve, for short episodes at either end of
    the clip and in its middle: inside the plot, and never on top of each other."""
    browser.get(site.url + "/")
    wait_for(browser, lambda b: b.find_elements("css selector", "#model option"))
    for marks in ((0, 0, 0), (0, 1, 2), (48, 49, 50), (97, 98, 99), (99, 99, 99), (5, 50, 95)):
        boxes = browser.execute_script(MARK_BOXES, marks)
        for left, _, right, _, low, high in boxes:
            assert low <= left < right <= high, (marks, boxes)  # shown, and inside
        for i, (left, top, right, bottom, *_) in enumerate(boxes):
            for other in boxes[i + 1 :]:
                apart = (
                    right <= other[0] or other[2] <= left or bottom <= other[1] or other[3] <= top
                )
                assert apart, (marks, boxes)


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
    assert by_id(browser, "verdict").text.startswith("surprise, ")  # the one shown last


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


def test_the_model_menu_says_what_each_model_is(browser, site: Site) -> None:
    """Each checkpoint by its model and training data (its metadata), then its file."""
    browser.get(site.url + "/")
    wait_for(browser, lambda b: len(b.find_elements("css selector", "#model option")) == 3)
    texts = [o.text for o in browser.find_elements("css selector", "#model option")]
    untrained = "cabm trained on synthetic (classes happiness, surprise, disgust)"
    trained = describe(read_meta(site.model))
    assert trained.startswith("cabm trained on casme2 (24 clips; classes happiness, ")
    assert texts == [
        f"not a readable merkit model — {site.root / 'broken.pt'}",
        f"{untrained} — model.pt",
        f"{trained} — {MODEL}",
    ]


def test_runs_page_opens_a_run_and_compares_two(browser, site: Site) -> None:
    before = tree(site.runs)
    browser.get(site.url + "/runs")
    rows = wait_for(browser, lambda b: b.find_elements("css selector", "#runs tbody tr"))
    assert [r.get_attribute("data-run") for r in rows] == [
        "cabm-loso", "nested/cabm-kfold", "unfinished"
    ]  # fmt: skip
    assert "0.7222" in rows[0].text and "leaks subjects" in rows[1].text
    assert "megc2019-flow" in rows[0].text and "2025-05-01 12:03 UTC" in rows[0].text
    assert "no data.class_names recorded" in rows[2].text

    # A run's page: what ran, on which data, when, first; and a way back.
    browser.find_element("link text", "cabm-loso").click()
    wait_for(browser, lambda b: b.find_element("tag name", "h1").text == "merkit run: cabm-loso")
    lead = browser.find_element("css selector", "h1 + p.lead").text
    assert lead == "cabm on megc2019-flow (3 classes), loso; finished 2025-05-01 12:03 UTC."
    assert "Per subject" in browser.page_source
    assert image_loaded_by_css(browser, "img[alt='confusion matrix']")
    browser.find_element("link text", BACK).click()
    wait_for(browser, lambda b: b.find_elements("css selector", "#runs tbody tr"))
    assert browser.current_url == site.url + "/runs"

    assert not by_id(browser, "compare").is_enabled()
    for run in ("cabm-loso", "nested/cabm-kfold"):
        browser.find_element("css selector", f"input[value='{run}']").click()
    by_id(browser, "compare").click()
    heading = "merkit comparison of 2 runs"
    wait_for(browser, lambda b: b.find_element("tag name", "h1").text == heading)
    tables = browser.find_elements("css selector", "table")
    assert len(tables) == 3  # overall and per dataset; per class F1; per class recall
    for table in tables:
        rows = table.find_elements("css selector", "tbody tr")
        assert len(rows) == 2 and "leak" in rows[1].get_attribute("class")
    # per class, the best of each column marked: the subject-independent run's
    headings = [h.text for h in browser.find_elements("tag name", "h2")]
    assert headings[1:3] == ["Per class: F1", "Per class: recall"]
    f1 = tables[1]
    assert [h.text for h in f1.find_elements("tag name", "th")] == ["run", *CLASSES]
    best = f1.find_elements("css selector", "tbody tr:first-child td.best")
    assert [cell.text for cell in best] == ["0.6667", "0.5000", "1.0000"]
    assert best[0].value_of_css_property("font-weight") == "700"
    assert f1.find_elements("css selector", "tbody tr.leak td.best") == []
    assert (
        "Bold: the best of each column among the subject-independent runs." in browser.page_source
    )
    browser.find_element("link text", BACK).click()
    wait_for(browser, lambda b: b.find_elements("css selector", "#runs tbody tr"))
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
