"""Test helpers for `merkit serve`: a runs folder, clips to upload, a live server."""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from inference_fixtures import CLEAR, untrained_checkpoint
from merkit.serve import ServeConfig, create_app
from merkit.serve.guard import PAGE_HEADER
from merkit.synthetic.dataset import write_synthetic_video
from preprocess_clips import write_frames
from test_report import write_run

# A clip with one clear movement inside neutral frames (0-based frame numbers of the video).
CLIP = {"n_frames": 100, "onset": 30, "apex": 45, "offset": 70}


def write_clip(path: Path, emotion: str = "surprise", subject: int = 20) -> Path:
    write_synthetic_video(path, emotion, subject=subject, config=CLEAR, **CLIP)
    return path


def write_runs(root: Path) -> Path:
    """Two finished runs (one subject-leaking), an unfinished one, and a checkpoint."""
    write_run(root / "cabm-loso")
    write_run(root / "nested" / "cabm-kfold", leaking=True)
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("config: {}\n")
    untrained_checkpoint(root / "model.pt")
    return root


def blank_zip(path: Path) -> Path:
    """Three flat grey frames: a clip in which no face can be found."""
    folder = path.parent / f".{path.stem}-frames"
    write_frames(folder, [np.full((96, 96), 128, np.uint8)] * 3, [1, 2, 3])
    return zip_folder(folder, path)


def zip_folder(folder: Path, path: Path, prefix: str = "clip/") -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for frame in sorted(folder.iterdir()):
            bundle.write(frame, prefix + frame.name)
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` with its size and modification time: to see nothing changed."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


# ---- the app in process ----------------------------------------------------------------------

LOCAL_URL = "http://127.0.0.1:8765"  # an address the server answers (its Host check)


@contextmanager
def served(config: ServeConfig) -> Iterator[TestClient]:
    """The app under the test client, called as its own page calls it: at 127.0.0.1, with the
    page token that /api/config hands out sent on every request."""
    with TestClient(create_app(config), base_url=LOCAL_URL) as http:
        http.headers[PAGE_HEADER] = http.get("/api/config").json()["page_token"]
        yield http


# ---- a live server ---------------------------------------------------------------------------


@contextmanager
def live_server(app: object) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1 and a free port, in a thread; stopped on exit."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start within 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
