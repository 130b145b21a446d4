"""`merkit serve` against other sites and other people: DNS rebinding, cross-site uploads,
linked files in run folders, headers, exposure on a network, hostile checkpoints, a full disk,
leftovers of a killed server. Each is one sentence with its status (or exit 2), and nothing is
read or written where it should not be."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cli_helpers import run as cli
from cli_helpers import widen_consoles
from inference_fixtures import make_meta
from merkit.errors import ConfigError
from merkit.serve import ServeConfig, create_app, uploads
from merkit.serve.guard import CONTENT_SECURITY_POLICY, PAGE_HEADER, TOKEN_COOKIE
from serve_fixtures import LOCAL_URL, served, tree, write_clip, write_runs, zip_bytes
from test_hostile_models import onnx_model, tampered, with_weights

pytestmark = pytest.mark.usefixtures("one_thread")

EVIL = "http://evil.example"
STATIC = Path(__file__).parents[1] / "src" / "merkit" / "serve" / "static"


@pytest.fixture(autouse=True)
def wide_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    widen_consoles(monkeypatch)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_runs(tmp_path_factory.mktemp("runs"))
    tampered(root / "hostile" / "huge.pt", model_kwargs={"dim": 100000, "depth": 2})
    with_weights(root / "hostile" / "nan.pt", lambda v: v.fill_(float("nan")))
    with_weights(root / "hostile" / "overflow.pt", lambda v: v.fill_(3e38))
    onnx_model(root / "hostile" / "classes.onnx", 5, make_meta("ststnet"))  # names 3 classes
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "surprise.mp4")


@pytest.fixture
def uploads_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


@pytest.fixture
def client(runs: Path, uploads_dir: Path) -> Iterator[TestClient]:
    with served(ServeConfig(runs=runs, max_upload_mb=3.0, upload_dir=uploads_dir)) as http:
        yield http


def model_id(http: TestClient, label: str) -> str:
    return next(m["id"] for m in http.get("/api/config").json()["models"] if m["label"] == label)


def upload(http: TestClient, data: bytes, model: str = "model.pt", **headers: str):
    form = {"model": model_id(http, model), "aligned": "1"}
    files = {"file": ("clip.mp4", data)}
    return http.post("/api/jobs", data=form, files=files, headers=headers)


def finished(http: TestClient, job: str) -> tuple[int, dict]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = http.get(f"/api/jobs/{job}")
        if response.json()["status"] not in ("queued", "running"):
            return response.status_code, response.json()
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish")


def one_sentence(response) -> str:  # noqa: ANN001  (an httpx response)
    message = response.json()["error"]
    assert "\n" not in message and "Traceback" not in message, message
    return message


# ---- DNS rebinding ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example"])
def test_a_foreign_host_reads_nothing(client: TestClient, host: str) -> None:
    for path in ("/api/runs", "/runs/report?run=cabm-loso", "/api/config", "/", "/static/runs.js"):
        response = client.get(path, headers={"Host": host})
        assert response.status_code == 400 and response.text == "Invalid host header", path
        assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "localhost"])
def test_the_servers_own_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/api/runs", headers={"Host": host}).status_code == 200


# ---- cross-site uploads ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Origin": EVIL}, f"a request from {EVIL} is refused"),
        ({"Origin": "null"}, "a request from null is refused"),
        ({"Origin": "http://127.0.0.1:9999"}, "from http://127.0.0.1:9999 is refused"),
        ({PAGE_HEADER: ""}, "the request lacks the page's token"),
        ({PAGE_HEADER: "guessed"}, "the request lacks the page's token"),
    ],
)
def test_an_upload_from_another_site_is_refused(
    client: TestClient, uploads_dir: Path, clip: Path, headers: dict, message: str
) -> None:
    """A foreign Origin is refused even with the page's token; no Origin needs the token."""
    before = client.get("/api/jobs").json()
    response = upload(client, clip.read_bytes(), **headers)
    assert response.status_code == 403 and message in one_sentence(response)
    assert client.get("/api/jobs").json() == before and list(uploads_dir.iterdir()) == []


def test_the_pages_own_upload_is_taken(client: TestClient, clip: Path) -> None:
    response = upload(client, clip.read_bytes(), Origin=LOCAL_URL)
    assert response.status_code == 202
    assert finished(client, response.json()["id"])[1]["status"] == "done"


# ---- linked files in run folders -------------------------------------------------------------


def test_linked_files_in_a_run_folder_are_never_opened(runs: Path, tmp_path: Path) -> None:
    outside = write_runs(tmp_path / "outside") / "nested" / "cabm-kfold"  # other figures
    run = runs / "linked"
    run.mkdir()
    (run / "config.yaml").write_bytes((runs / "cabm-loso" / "config.yaml").read_bytes())
    (run / "predictions.csv").symlink_to(outside / "predictions.csv")
    config_link = runs / "linked-config"
    config_link.mkdir()
    (config_link / "config.yaml").symlink_to(outside / "config.yaml")
    (config_link / "predictions.csv").write_bytes((outside / "predictions.csv").read_bytes())
    piped = runs / "piped"
    piped.mkdir()
    (piped / "config.yaml").write_bytes((runs / "cabm-loso" / "config.yaml").read_bytes())
    os.mkfifo(piped / "predictions.csv")  # opening it to read would wait for a writer
    try:
        with served(ServeConfig(runs=runs)) as http:
            listed = {r["id"]: r for r in http.get("/api/runs").json()["runs"]}
            assert "no predictions.csv" in listed["linked"]["error"]
            assert "no config.yaml" in listed["linked-config"]["error"]
            assert "no predictions.csv" in listed["piped"]["error"]
            for name in ("linked", "linked-config", "piped"):
                assert "overall" not in listed[name], name
                page = http.get("/runs/report", params={"run": name})
                assert page.status_code == 400 and str(run.parent / name) in page.text
                compared = http.get("/runs/compare", params={"run": ["cabm-loso", name]})
                assert compared.status_code == 400 and "leak" not in compared.text
    finally:
        for folder in (run, config_link, piped):
            for item in folder.iterdir():
                item.unlink()
            folder.rmdir()


# ---- headers and inline code -----------------------------------------------------------------


def test_every_answer_carries_the_security_headers(client: TestClient, clip: Path) -> None:
    answers = [
        client.get(path)
        for path in ("/", "/runs", "/static/predict.js", "/static/serve.css", "/api/config",
                     "/runs/report?run=cabm-loso", "/runs/report?run=nowhere", "/report.css")
    ]  # fmt: skip
    answers.append(upload(client, clip.read_bytes(), Origin=EVIL))
    for response in answers:
        assert response.headers["x-content-type-options"] == "nosniff"
        policy = response.headers["content-security-policy"]
        assert policy == CONTENT_SECURITY_POLICY
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
    assert [r.status_code for r in answers] == [200] * 6 + [404, 200, 403]


def test_no_page_holds_inline_script_or_style(client: TestClient) -> None:
    inline = re.compile(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", re.IGNORECASE)
    pages = ["/", "/runs", "/runs/report?run=cabm-loso", "/runs/compare?run=cabm-loso"]
    pages.append("/runs/compare?run=cabm-loso&run=nested/cabm-kfold")
    for path in pages:
        text = client.get(path).text
        assert "<html" in text and not inline.search(text), path
    for script in STATIC.glob("*.js"):  # and no script writes markup or styles as text
        assert not re.search(r"innerHTML|setAttribute\(\"style|\.cssText", script.read_text())


# ---- exposure on a network -------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What `merkit serve` hands uvicorn, instead of serving."""
    import uvicorn

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    return seen


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def test_a_network_address_warns_and_asks_for_a_token(runs: Path, started: dict, capsys) -> None:
    port = free_port("0.0.0.0")
    code, out, err = cli(["serve", "--runs", str(runs), "--host", "0.0.0.0", "--port", str(port)],
                         capsys)  # fmt: skip
    assert code == 0 and started["host"] == "0.0.0.0"
    assert "warning: --host 0.0.0.0 listens beyond this machine: anyone on the network" in err
    token = re.search(r"\?token=([A-Za-z0-9_-]+) ", out).group(1)
    with TestClient(started["app"], base_url=f"http://{socket.gethostname()}:{port}") as http:
        refused = http.get("/api/runs")
        assert refused.status_code == 401 and "needs its access token" in one_sentence(refused)
        assert http.get("/static/predict.js").status_code == 401
        assert (
            http.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        opened = http.get(f"/runs?token={token}", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/runs"
        assert "httponly" in opened.headers["set-cookie"].lower()
        assert http.get("/api/runs").status_code == 200  # the cookie now
    guessed = TestClient(started["app"], base_url=LOCAL_URL)
    assert (
        guessed.get("/api/runs", headers={"Cookie": f"{TOKEN_COOKIE}=guessed"}).status_code == 401
    )


def test_a_given_token_is_asked_on_this_machine_too(runs: Path, started: dict, capsys) -> None:
    port = free_port()
    argv = ["serve", "--runs", str(runs), "--port", str(port), "--token", "s3cret t"]
    code, out, err = cli(argv, capsys)
    assert code == 0 and "warning" not in err and f":{port}/?token=s3cret%20t " in out
    with TestClient(started["app"], base_url=LOCAL_URL) as http:
        assert http.get("/api/runs").status_code == 401
        assert (
            http.get("/api/runs", headers={"Authorization": "Bearer s3cret t"}).status_code == 200
        )


def test_no_server_answers_any_host_without_a_token() -> None:
    with pytest.raises(ConfigError, match="answers any Host name needs an access token"):
        ServeConfig(hosts=("*",))


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-upload-mb", "nan", "--max-upload-mb nan: expected a positive size"),
        ("--max-upload-mb", "inf", "--max-upload-mb inf: expected a positive size"),
        ("--max-upload-mb", "0", "--max-upload-mb 0.0: expected a positive size"),
        ("--port", "70000", "--port 70000: expected a port from 1 to 65535"),
        ("--port", "-1", "--port -1: expected a port from 1 to 65535"),
        ("--token", " ", "--token: empty"),
    ],
)
def test_bad_serve_options_are_one_sentence(
    started: dict, capsys, option: str, value: str, message: str
) -> None:
    code, out, err = cli(["serve", option, value], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), err
    assert not started and out == ""


# ---- hostile checkpoints, a full disk --------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message", "when"),
    [
        ("hostile/huge.pt", "invalid checkpoint metadata: model 'cabm'", "load"),
        ("hostile/nan.pt", "the weights hold NaN or infinite values", "load"),
        ("hostile/classes.onnx", "gives 5 class scores, its metadata names 3 classes", "load"),
        ("hostile/overflow.pt", "answered NaN or infinite probabilities for clip.mp4", "run"),
    ],
)  # fmt: skip
def test_hostile_checkpoints_are_one_sentence(
    client: TestClient, clip: Path, uploads_dir: Path, model: str, message: str, when: str
) -> None:
    response = upload(client, clip.read_bytes(), model=model)
    if when == "load":
        assert response.status_code == 422 and message in one_sentence(response)
    else:
        status, job = finished(client, response.json()["id"])
        assert status == 422 and message in job["error"] and job["result"] is None
    assert list(uploads_dir.iterdir()) == []
    listed = json.dumps(client.get("/api/jobs").json())
    assert not re.search(r"[:\[,]\s*-?(NaN|Infinity)", listed)  # no NaN as a figure


def test_a_clip_of_one_frame_is_one_sentence(client: TestClient, uploads_dir: Path) -> None:
    frame = cv2.imencode(".jpg", np.full((64, 64), 128, np.uint8))[1].tobytes()
    form = {"model": model_id(client, "model.pt"), "aligned": "1"}
    files = {"file": ("one.zip", zip_bytes({"one/img7.jpg": frame}))}
    status, job = finished(client, client.post("/api/jobs", data=form, files=files).json()["id"])
    assert status == 422
    assert job["error"] == "one.zip: 1 frame(s); at least 2 are needed to see motion"
    assert list(uploads_dir.iterdir()) == []


def test_a_full_disk_is_507_in_one_sentence(
    client: TestClient, clip: Path, uploads_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_fills(source, target: Path, limit: int) -> bool:  # noqa: ANN001
        target.write_bytes(source.read(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    monkeypatch.setattr(uploads, "_copy", disk_fills)
    before = client.get("/api/jobs").json()
    response = upload(client, clip.read_bytes())
    assert response.status_code == 507
    assert one_sentence(response).startswith("the server's disk is full (No space left on device)")
    assert list(uploads_dir.iterdir()) == [] and client.get("/api/jobs").json() == before


# ---- leftovers of a killed server ------------------------------------------------------------


def test_a_killed_servers_upload_folders_go_at_the_next_start(runs: Path, tmp_path: Path) -> None:
    """A process makes an upload folder as the server does and is killed (kill -9): the next
    server to start removes the folder; those of a server still running, and folders merkit
    did not name, stay."""
    uploads_dir = tmp_path / "uploads"
    running = uploads_dir / f"merkit-serve-{os.getppid()}-def456"  # a server still running
    other = uploads_dir / "merkit-serve-notes"
    for folder in (running, other):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("not a leftover")
    script = (
        "import sys, time; from pathlib import Path; from merkit.serve import uploads;"
        "folder = uploads.new_folder(Path(sys.argv[1])); (folder / 'clip.mp4').write_bytes(b'x');"
        "print(folder, flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen([sys.executable, "-c", script, str(uploads_dir)],
                              stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        left = Path(server.stdout.readline().strip() if server.stdout else "")
        assert left.name.startswith(f"merkit-serve-{server.pid}-")
    finally:
        server.kill()
        server.wait()
    before = tree(uploads_dir)
    assert (left / "clip.mp4").is_file()  # what kill -9 leaves
    create_app(ServeConfig(runs=runs, upload_dir=uploads_dir)).state.jobs.close()
    assert sorted(uploads_dir.iterdir()) == [running, other]
    assert tree(uploads_dir) == {k: v for k, v in before.items() if not k.startswith(left.name)}
