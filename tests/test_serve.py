"""`merkit serve` over HTTP, in process: uploads, jobs, refusals, runs, what stays untouched."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from inference_fixtures import untrained_checkpoint
from merkit.cli import main
from merkit.errors import DataLayoutError
from merkit.evaluation.comparison import write_comparison
from merkit.evaluation.html import CSS, linked_css, with_back_link
from merkit.evaluation.report import render_run
from merkit.inference import Predictor
from merkit.inference.wording import plain
from merkit.serve import ServeConfig
from merkit.serve.app import BACK
from merkit.serve.catalog import Catalog, ModelEntry
from merkit.serve.jobs import Job, JobQueue
from merkit.serve.uploads import NotAClip, TooLarge, unpack_frames
from merkit.serve.views import CURVE_FROM_ONSET, CURVE_FROM_PREDICT, motion_curve
from preprocess_clips import face_clip
from serve_fixtures import (
    blank_zip,
    served,
    tree,
    write_clip,
    write_runs,
    zip_bytes,
    zip_folder,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LIMIT_MB = 3.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "surprise.mp4")


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def client(runs: Path, uploads: Path, tmp_path: Path) -> Iterator[TestClient]:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    config = ServeConfig(runs=runs, models=(bad,), max_upload_mb=LIMIT_MB, upload_dir=uploads)
    with served(config) as http:
        yield http


def model_id(http: TestClient, label: str) -> str:
    models = http.get("/api/config").json()["models"]
    return next(m["id"] for m in models if m["label"].endswith(label))


def upload(http: TestClient, name: str, data: bytes, model: str = "model.pt", aligned: bool = True):
    form = {"model": model_id(http, model), "aligned": "1" if aligned else "0"}
    return http.post("/api/jobs", data=form, files={"file": (name, data)})


def wait(http: TestClient, job: str, seconds: float = 60.0) -> tuple[int, dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        response = http.get(f"/api/jobs/{job}")
        body = response.json()
        if body["status"] not in ("queued", "running"):
            return response.status_code, body
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish within {seconds} s")


# ---- predicting ------------------------------------------------------------------------------


def test_a_clip_gets_predicts_result_and_its_pictures(
    client: TestClient, runs: Path, clip: Path, uploads: Path
) -> None:
    submitted = upload(client, clip.name, clip.read_bytes())
    assert submitted.status_code == 202 and submitted.json()["status"] in ("queued", "running")
    status, job = wait(client, submitted.json()["id"])
    assert status == 200 and job["status"] == "done", job["error"]
    assert job["done"] == ["read", "face", "spotting", "motion", "model", "pictures"]

    expected = Predictor.load(runs / "model.pt").predict(clip, aligned=True)
    result = job["result"]
    assert result["input"] == clip.name  # the user's name, not the temporary path
    for key in ("onset", "apex", "offset", "frames", "fps", "face", "predicted", "timing_sources"):
        assert result[key] == expected[key], key
    for name, p in expected["probabilities"].items():
        assert result["probabilities"][name] == pytest.approx(p, abs=1e-5)
    views = job["views"]
    assert len(views["numbers"]) == len(views["curve"]) == expected["frames"]
    assert views["curve_source"] == CURVE_FROM_PREDICT  # spotted: predict's curve
    spotted = dict(zip(result["spotting"]["frames"], result["spotting"]["motion"], strict=True))
    assert views["curve"] == [spotted[n] for n in views["numbers"]]
    assert views["images"] == ["attention", "face", "flow", "input"]
    assert views["attention"] == "spatial-attention"  # cabm's CBAM
    assert views["words"] == json.loads(json.dumps(plain(expected)))  # the answer in words
    assert (
        views["words"]["verdict"]
        == f"{result['predicted']}, probability {result['confidence']:.2f}"
    )
    assert "spatial attention (CBAM)" in views["captions"]["attention"]
    assert job["model_about"] == "cabm trained on synthetic (classes happiness, surprise, disgust)"

    download = client.get(f"/api/jobs/{job['id']}/result.json")
    assert download.headers["content-disposition"] == 'attachment; filename="surprise.json"'
    assert download.text == json.dumps(result, indent=2) + "\n"  # as `merkit predict` writes it
    for name in views["images"]:
        picture = client.get(f"/api/jobs/{job['id']}/images/{name}.png")
        assert picture.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(picture.content, np.uint8), 1) is not None
    apex = views["numbers"].index(result["apex"])
    frame = client.get(f"/api/jobs/{job['id']}/frames/{apex}.jpg")
    face = cv2.imdecode(np.frombuffer(frame.content, np.uint8), 0)
    assert face.shape == (128, 128)  # the aligned crop
    assert (
        client.get(f"/api/jobs/{job['id']}/frames/{len(views['numbers'])}.jpg").status_code == 404
    )
    assert list(uploads.iterdir()) == []  # the upload folder went with the job


def test_a_model_without_spatial_attention_shows_none(
    clip: Path, uploads: Path, tmp_path: Path
) -> None:
    """No saliency is painted as if it were attention (`merkit.inference.picture`)."""
    model = tmp_path / "ststnet.pt"
    untrained_checkpoint(model, model="ststnet")
    with served(ServeConfig(models=(model,), upload_dir=uploads)) as http:
        form = {"model": model_id(http, "ststnet.pt"), "aligned": "1"}
        submitted = http.post(
            "/api/jobs", data=form, files={"file": (clip.name, clip.read_bytes())}
        )
        status, job = wait(http, submitted.json()["id"])
    assert status == 200 and job["status"] == "done", job["error"]
    assert job["views"]["attention"] is None and "attention" not in job["views"]["images"]
    assert set(job["views"]["captions"]) == {"face", "flow"}


def test_a_zip_of_frames_is_a_clip_and_faces_are_found(
    client: TestClient, runs: Path, tmp_path: Path
) -> None:
    """Real-face frames (a photograph, slightly warped) zipped in a folder: detection runs."""
    frames = face_clip(tmp_path / "astronaut", count=9, apex=5, peak=3.0, first=10).path
    archive = zip_folder(frames, tmp_path / "astronaut.zip")
    status, job = wait(client, upload(client, "astronaut.zip", archive.read_bytes(),
                                      aligned=False).json()["id"])  # fmt: skip
    assert status == 200, job["error"]
    expected = Predictor.load(runs / "model.pt").predict(frames)
    assert job["result"]["input"] == "astronaut.zip"
    assert (job["result"]["apex"], job["result"]["face"]) == (expected["apex"], expected["face"])
    assert job["views"]["numbers"] == list(range(10, 19))


def test_several_clips_are_queued_and_run_in_order(client: TestClient, clip: Path) -> None:
    ids = [upload(client, f"clip{i}.mp4", clip.read_bytes()).json()["id"] for i in range(3)]
    jobs = [wait(client, job)[1] for job in ids]
    assert [j["status"] for j in jobs] == ["done"] * 3
    assert len({j["result"]["apex"] for j in jobs}) == 1
    listed = [j["id"] for j in client.get("/api/jobs").json()]
    assert listed[-3:] == ids


def test_motion_curve_is_predicts_own_else_the_difference_from_the_onset() -> None:
    faces = np.zeros((9, 8, 8), np.uint8)
    faces[4:] = 20  # a step: a lasting change from frame 4 on
    faces[6] = 60  # and a short movement at frame 6
    numbers = list(range(10, 19))
    own = {"spotting": {"frames": [12, 13, 14], "motion": [0.5, 2, 1]}}
    assert motion_curve(own, faces, numbers, 0) == (
        [None, None, 0.5, 2.0, 1.0, None, None, None, None], CURVE_FROM_PREDICT
    )  # fmt: skip
    given = {"timing_sources": {"onset": "given"}, "spotting": {"frames": [], "motion": []}}
    from_onset, source = motion_curve(given, faces, numbers, 0)
    assert source == CURVE_FROM_ONSET and from_onset[0] == 0 and from_onset[5] > 0
    assert int(np.argmax(from_onset)) == 6


# ---- refusals --------------------------------------------------------------------------------


def test_bad_inputs_get_one_sentence_and_a_4xx(client: TestClient, tmp_path: Path) -> None:
    refused = upload(client, "notes.txt", b"hello")
    assert refused.status_code == 415
    assert refused.json()["error"].startswith("notes.txt: not a video (.mp4, .avi")

    big = upload(client, "long.mp4", b"\0" * int(LIMIT_MB * 1e6 + 200_000))
    assert big.status_code == 413
    assert big.json()["error"].startswith("the upload (3.2 MB) is over the 3.0 MB upload limit")
    edge = upload(client, "edge.mp4", b"\0" * int(LIMIT_MB * 1e6 + 10))  # caught while copied
    assert edge.status_code == 413
    assert edge.json()["error"].startswith("edge.mp4 is over the 3.0 MB upload limit (start")

    bad_model = upload(client, "clip.mp4", b"x", model="bad.pt")
    assert bad_model.status_code == 422
    assert (
        bad_model.json()["error"].startswith("model ")
        and "does not load" in bad_model.json()["error"]
    )
    unknown = client.post("/api/jobs", data={"model": "m000"}, files={"file": ("a.mp4", b"x")})
    assert unknown.status_code == 404 and "no model 'm000'" in unknown.json()["error"]
    no_file = client.post("/api/jobs", data={"model": model_id(client, "model.pt")})
    assert no_file.status_code == 400 and "holds no file" in no_file.json()["error"]

    status, job = wait(client, upload(client, "blank.zip", blank_zip(tmp_path / "b.zip")
                                      .read_bytes(), aligned=False).json()["id"])  # fmt: skip
    assert status == 422 and job["status"] == "failed"
    assert job["error"] == (
        "blank.zip (frame 1): no face found in the onset frame (expected one frontal face; "
        "use aligned=True for cropped faces)"
    )
    status, job = wait(client, upload(client, "broken.mp4", b"\0" * 64).json()["id"])
    assert status == 422 and job["error"].startswith("broken.mp4: no video frames")
    assert client.get(f"/api/jobs/{job['id']}/result.json").status_code == 400
    assert "Traceback" not in json.dumps(client.get("/api/jobs").json())


def test_zips_are_unpacked_flat_within_limits(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"../../evil1.jpg": b"1", "../../evil2.jpg": b"2",
                                   "readme.txt": b"x", "__MACOSX/._evil1.jpg": b""}))  # fmt: skip
    unpack_frames(archive, tmp_path / "out", limit=100)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["evil1.jpg", "evil2.jpg"]
    assert not (tmp_path.parent / "evil1.jpg").exists()

    archive.write_bytes(zip_bytes({"a/1.jpg": b"1", "b/2.jpg": b"2"}))
    with pytest.raises(NotAClip, match=r"a.zip: frames in 2 folders \(a/, b/\)"):
        unpack_frames(archive, tmp_path / "two", limit=100)
    archive.write_bytes(zip_bytes({"notes.txt": b"1"}))
    with pytest.raises(NotAClip, match="a.zip: the zip holds no image frames"):
        unpack_frames(archive, tmp_path / "none", limit=100)
    archive.write_bytes(zip_bytes({"f/1.png": b"\0" * 5000}))  # compresses to a few bytes
    with pytest.raises(TooLarge, match="a.zip: its frames unpack to more than"):
        unpack_frames(archive, tmp_path / "bomb", limit=1000)
    archive.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(NotAClip, match="a.zip: not a readable zip file"):
        unpack_frames(archive, tmp_path / "bad", limit=100)


def test_a_zip_member_that_lies_about_its_size_stops_at_it(tmp_path: Path) -> None:
    """The limit is checked on the declared sizes: a member holding more fails, named."""
    archive = tmp_path / "liar.zip"
    archive.write_bytes(zip_bytes({"f/1.png": b"\0" * 5000}))
    data = archive.read_bytes().replace((5000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    archive.write_bytes(data)
    with pytest.raises(NotAClip, match="liar.zip: f/1.png cannot be unpacked"):
        unpack_frames(archive, tmp_path / "out", limit=1000)
    assert (tmp_path / "out" / "1.png").stat().st_size <= 10


# ---- runs ------------------------------------------------------------------------------------


def test_runs_are_listed_with_their_figures(client: TestClient, runs: Path) -> None:
    listed = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert sorted(listed) == ["cabm-loso", "nested/cabm-kfold", "unfinished"]
    loso = listed["cabm-loso"]
    assert (loso["model"], loso["protocol"], loso["leaking"]) == ("cabm", "loso", False)
    assert loso["overall"]["uf1"] == pytest.approx(0.7222, abs=1e-4)
    assert listed["nested/cabm-kfold"]["leaking"] is True
    assert "no data.class_names recorded" in listed["unfinished"]["error"]
    assert (loso["dataset"], loso["date"]) == ("megc2019-flow", "2025-05-01 12:03 UTC")
    models = client.get("/api/config").json()["models"]
    assert models[0]["label"].endswith("bad.pt") and models[1]["label"] == "model.pt"
    assert models[0]["about"] == "not a readable merkit model"
    assert models[1]["about"] == "cabm trained on synthetic (classes happiness, surprise, disgust)"


def test_a_run_and_a_comparison_are_what_merkit_report_writes(
    client: TestClient, runs: Path, tmp_path: Path
) -> None:
    before = tree(runs)
    page = client.get("/runs/report", params={"run": "cabm-loso"})
    compared = client.get("/runs/compare", params={"run": ["cabm-loso", "nested/cabm-kfold"]})
    assert tree(runs) == before  # nothing written into --runs

    copy = tmp_path / "cabm-loso"
    copy.mkdir()
    for name in ("config.yaml", "predictions.csv"):
        (copy / name).write_bytes((runs / "cabm-loso" / name).read_bytes())
    render_run(copy)
    pairs = [(page, copy / "report.html"), (compared, tmp_path / "cmp" / "comparison.html")]
    write_comparison([runs / "cabm-loso", runs / "nested" / "cabm-kfold"], tmp_path / "cmp")
    for response, written in pairs:  # the same, but for the stylesheet: linked, not inline
        assert response.status_code == 200 and "<style>" not in response.text
        served = linked_css(written.read_text(), "/report.css")
        assert response.text == with_back_link(served, "/runs", BACK)  # and a way back
    assert client.get("/report.css").text == CSS


def test_nothing_outside_runs_can_be_opened(client: TestClient, runs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside-run"
    write_runs(tmp_path / "elsewhere")
    (tmp_path / "elsewhere" / "cabm-loso").rename(outside)
    (runs / "link").symlink_to(outside, target_is_directory=True)
    try:
        for run in ("../outside-run", str(outside), "link", "cabm-loso/../../outside-run", ""):
            response = client.get("/runs/report", params={"run": run})
            assert response.status_code == 404 and "no run folder" in response.text, run
        assert "link" not in [r["id"] for r in client.get("/api/runs").json()["runs"]]
        one = client.get("/runs/compare", params={"run": ["cabm-loso"]})
        assert one.status_code == 400 and "at least two runs; 1 chosen" in one.text
        assert client.get("/static/../catalog.py").status_code == 404
    finally:
        (runs / "link").unlink()


def test_catalog_skips_hidden_and_deep_folders(tmp_path: Path) -> None:
    write_runs(tmp_path)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.pt").write_bytes(b"")
    deep = tmp_path / "a" / "b" / "c" / "d" / "e"
    deep.mkdir(parents=True)
    (deep / "y.pt").write_bytes(b"")
    catalog = Catalog(tmp_path, [tmp_path / "model.pt"])
    assert [m.label for m in catalog.models()] == ["model.pt"]  # given once, not twice


def test_serve_refuses_bad_options_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as code:
        main(["serve", "--runs", str(tmp_path / "nowhere")])
    assert code.value.code == 2 and "--runs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as code:
        main(["serve", "--model", str(tmp_path / "missing.pt")])
    assert code.value.code == 2 and "missing.pt: no such file" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as code:
            main(["serve", "--port", str(port)])
    assert code.value.code == 2
    assert f"--host 127.0.0.1 --port {port}: the address is in use" in capsys.readouterr().err


@pytest.mark.slow
def test_merkit_serve_prints_its_address_serves_and_stops_on_ctrl_c(runs: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-c", "from merkit.cli import main; main()", "serve", "--runs",
               str(runs), "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)  # fmt: skip
    try:
        line = server.stdout.readline() if server.stdout else ""
        assert line.startswith(f"merkit serve: http://127.0.0.1:{port}/ (1 checkpoint, runs from")
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5) as r:
                    listed = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr
                time.sleep(0.2)
        assert len(listed["runs"]) == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert "<title>merkit: predict</title>" in page.read().decode()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()


class SlowPredictor:
    """Stands in for a Predictor: each clip takes 0.3 s and then fails."""

    def analyse(self, input: Path, **_: object) -> None:
        time.sleep(0.3)
        raise DataLayoutError(f"{input}: stand-in")


def test_stopping_drops_queued_clips_and_their_uploads(tmp_path: Path) -> None:
    queue = JobQueue()
    entry = ModelEntry("m1", "stand-in.pt", tmp_path / "stand-in.pt")
    jobs = []
    for i in range(4):
        folder = tmp_path / f"upload{i}"
        folder.mkdir()
        (folder / "clip.mp4").write_bytes(b"x")
        job = Job(queue.new_id(), "clip.mp4", entry, SlowPredictor(), folder, folder / "clip.mp4")
        jobs.append(queue.submit(job))
    time.sleep(0.1)
    queue.close()  # while the first clip is in hand
    assert jobs[0].error == "clip.mp4: stand-in"
    assert [j.error for j in jobs[1:]] == ["the server stopped before this clip's turn"] * 3
    assert [j.status for j in jobs] == ["failed"] * 4
    assert not any(j.folder.exists() for j in jobs)
