"""The FastAPI app behind `merkit serve`: two plain pages (predict, runs) and a small JSON API.

Every refusal is one sentence in `{"error": ...}` with a 4xx status (400 a Host that is not the
server's, 401 no access token, 403 a request from another site, 404 unknown id, 411/413 an
upload too large or of unknown size, 415 not a video or a zip of frames, 422 a clip or a
checkpoint that cannot be used), 507 when the disk is full; a bug is one line with 500 on the
page and its traceback in the server's log. Who may ask is `merkit.serve.guard`'s business.
Nothing is written outside the temporary folders, and those that a killed server left behind
are removed when the next one starts.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import secrets
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from merkit.errors import ConfigError, MerkitError
from merkit.evaluation import html
from merkit.serve.catalog import Catalog, NotFound
from merkit.serve.guard import LOOPBACK_NAMES, PAGE_HEADER, Guard
from merkit.serve.jobs import DONE, FAILED, STAGES, Job, JobQueue, ModelError, Predictors
from merkit.serve.uploads import (
    NotAClip,
    TooLarge,
    megabytes,
    new_folder,
    remove,
    safe_name,
    save_upload,
    sweep,
    too_large,
)
from merkit.serve.views import Views

STATIC = Path(__file__).parent / "static"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the small fields around the file
DRAIN_FACTOR = 16  # an oversized body up to this many limits is read (and dropped) before the
# refusal, so the browser sees the 413 instead of a reset connection
REPORT_CSS = "/report.css"  # the reports' stylesheet, linked: the page runs no inline style
BACK = "← All runs"  # the link above a served report or comparison
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("merkit.serve")


@dataclass(frozen=True)
class ServeConfig:
    runs: Path | None = None  # folder searched for run folders and checkpoints
    models: tuple[Path, ...] = ()  # checkpoints offered first
    max_upload_mb: float = 200.0
    upload_dir: Path | None = None  # where upload folders are made (None: the system's temp)
    keep_jobs: int = 20  # finished clips kept for the page
    device: str = "cpu"  # where the models run (merkit.training.devices)
    hosts: tuple[str, ...] = LOOPBACK_NAMES  # Host names answered (guard.allowed_hosts)
    token: str | None = None  # the access token asked of every request (None: none asked)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise ConfigError(f"--max-upload-mb {self.max_upload_mb}: expected a positive size")
        if "*" in self.hosts and not self.token:
            raise ConfigError("a server that answers any Host name needs an access token")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


def status_of(exc: MerkitError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TooLarge):
        return 413
    if isinstance(exc, NotAClip):
        return 415
    if isinstance(exc, ModelError):
        return 422
    return 400


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _page(document: str, status: int = 200) -> HTMLResponse:
    """A report, comparison or error page, its stylesheet linked (see REPORT_CSS), with a link
    back to the runs."""
    page = html.with_back_link(html.linked_css(document, REPORT_CSS), "/runs", BACK)
    return HTMLResponse(page, status_code=status)


def _error_page(status: int, message: str) -> HTMLResponse:
    return _page(html.page("merkit serve", [html.paragraph(message, "warning")]), status)


def create_app(config: ServeConfig) -> FastAPI:
    """The app; its job worker starts now and stops (removing pending uploads) at shutdown.
    Folders that killed servers left behind are removed first."""
    for parent in dict.fromkeys([config.upload_dir, None]):
        for folder in sweep(parent):
            log.warning("removed %s, left behind by a merkit serve that was killed", folder)
    catalog = Catalog(config.runs, config.models)
    predictors = Predictors(config.device)
    jobs = JobQueue(keep=config.keep_jobs)
    page_token = secrets.token_urlsafe(16)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = FastAPI(title="merkit serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config, app.state.catalog, app.state.jobs = config, catalog, jobs
    app.add_middleware(Guard, hosts=config.hosts, token=config.token, page_token=page_token)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(MerkitError)
    async def merkit_error(_: Request, exc: MerkitError) -> JSONResponse:
        return _error(status_of(exc), str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()
        )
        return _error(400, f"bad request ({problems})")

    @app.exception_handler(OSError)
    async def disk_error(request: Request, exc: OSError) -> JSONResponse:
        """A full disk (an upload being stored, a report being rendered) is said in one
        sentence; any other system error is a bug."""
        if exc.errno not in DISK_FULL:
            return await internal_error(request, exc)
        return _error(
            507,
            f"the server's disk is full ({exc.strerror}), so nothing was kept; free space on "
            "the server, or send a smaller clip",
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed:\n%s", request.method, request.url.path, traceback.format_exc())
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")

    # ---- pages -------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def predict_page() -> FileResponse:
        return FileResponse(STATIC / "predict.html")

    @app.get("/runs", include_in_schema=False)
    def runs_page() -> FileResponse:
        return FileResponse(STATIC / "runs.html")

    @app.get("/runs/report", response_class=HTMLResponse)
    def run_report(run: str = Query(...)) -> HTMLResponse:
        """The run's report.html content, rendered from its files (the folder is not written)."""
        try:
            return _page(catalog.report_html(run))
        except MerkitError as exc:
            return _error_page(status_of(exc), str(exc))

    @app.get("/runs/compare", response_class=HTMLResponse)
    def run_comparison(run: list[str] = Query(default=[])) -> HTMLResponse:
        """What `merkit report RUN1 RUN2 ...` writes as comparison.html."""
        try:
            return _page(catalog.comparison_html(run))
        except MerkitError as exc:
            return _error_page(status_of(exc), str(exc))

    @app.get(REPORT_CSS, include_in_schema=False)
    def report_css() -> Response:
        return Response(html.CSS, media_type="text/css")

    # ---- API ---------------------------------------------------------------------------------

    @app.get("/api/config")
    def settings() -> dict[str, Any]:
        return {
            "models": [{"id": m.id, "label": m.label, "about": m.about} for m in catalog.models()],
            "max_upload_bytes": config.max_upload_bytes,
            "max_upload": megabytes(config.max_upload_bytes),
            "stages": STAGES,
            "runs": str(catalog.root) if catalog.root is not None else None,
            "page_token": page_token,  # what the page sends with an upload (PAGE_HEADER)
            "page_header": PAGE_HEADER,
        }

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        return {"root": settings()["runs"], "runs": catalog.runs()}

    @app.post("/api/jobs", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        """Queue one uploaded clip (form fields: file, model, aligned)."""
        limit = config.max_upload_bytes
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return _error(411, "the upload did not state its size (Content-Length)")
        if int(length) > limit + FORM_OVERHEAD:
            if int(length) <= DRAIN_FACTOR * limit:
                async for _ in request.stream():
                    pass
            raise too_large("the upload", int(length), limit)
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise MerkitError("the upload holds no file; choose a video or a zip of frames")
            entry = catalog.model(str(form.get("model") or ""))
            predictor = await run_in_threadpool(predictors.get, entry)
            folder = new_folder(config.upload_dir)
            try:
                path = await run_in_threadpool(
                    save_upload, upload.file, upload.filename, folder, limit
                )
            except BaseException:
                remove(folder)
                raise
            job = Job(
                id=jobs.new_id(),
                name=safe_name(upload.filename),
                model=entry,
                predictor=predictor,
                folder=folder,
                input=path,
                aligned=str(form.get("aligned") or "") in ("1", "true", "on"),
            )
        jobs.submit(job)
        return JSONResponse(jobs.snapshot(job), status_code=202)

    def find(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise NotFound(f"no clip {job_id!r} here (the server keeps the last few only)")
        return job

    def views_of(job_id: str) -> Views:
        job = find(job_id)
        if job.status == FAILED:
            raise MerkitError(job.error or "the clip could not be analysed")
        if job.status != DONE or job.views is None:
            raise MerkitError(f"{job.name} is not analysed yet")
        return job.views

    @app.get("/api/jobs")
    def all_jobs() -> list[dict[str, Any]]:
        return [jobs.snapshot(job) for job in jobs.all()]

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str) -> JSONResponse:
        """The clip's progress and, once done, predict's result; a failed clip answers with its
        error's status."""
        job = find(job_id)
        status = job.error_status if job.status == FAILED else 200
        return JSONResponse(jobs.snapshot(job), status_code=status)

    @app.get("/api/jobs/{job_id}/result.json")
    def download(job_id: str) -> Response:
        """The JSON `merkit predict` writes for this clip, as a file."""
        views_of(job_id)  # refuses a clip not analysed (yet)
        job = find(job_id)
        name = f"{Path(job.name).stem or 'clip'}.json"
        return Response(
            json.dumps(job.result, indent=2) + "\n",
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/jobs/{job_id}/images/{name}.png")
    def image(job_id: str, name: str) -> Response:
        views = views_of(job_id)
        if name not in views.images:
            raise NotFound(f"no {name!r} picture for this clip")
        return Response(views.images[name], media_type="image/png")

    @app.get("/api/jobs/{job_id}/frames/{index}.jpg")
    def frame(job_id: str, index: int) -> Response:
        views = views_of(job_id)
        if not 0 <= index < len(views.frames):
            raise NotFound(f"no frame at position {index} (the clip has {len(views.frames)})")
        return Response(views.frames[index], media_type="image/jpeg")

    return app
