"""Queued clips: one worker thread analyses them in the order they came, stage by stage.

A job owns its upload folder and removes it as soon as the clip is analysed (or fails, or the
server stops before its turn): what the page needs afterwards (predict's JSON, the encoded
frames and pictures) is kept in memory, for the last `keep` jobs only.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merkit.errors import MerkitError
from merkit.inference.predictor import Predictor
from merkit.serve.catalog import ModelEntry
from merkit.serve.uploads import remove
from merkit.serve.views import Views, build_views

# Predictor's stage names, in order, then the page's own last step; the page shows `STAGES`.
STAGES = {
    "read": "read",
    "face": "face",
    "spotting": "spotting",
    "motion": "flow",
    "model": "classify",
    "pictures": "pictures",
}
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
INPUT_ERROR = 422  # the clip could not be analysed: a user error, said in one sentence
INTERNAL_ERROR = 500

log = logging.getLogger("merkit.serve")


class ModelError(MerkitError):
    """A checkpoint that does not load."""


class Predictors:
    """Loaded models by id, each loaded once, on first use, onto `device`."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._loaded: dict[str, Predictor] = {}
        self._lock = threading.Lock()

    def get(self, entry: ModelEntry) -> Predictor:
        with self._lock:
            if entry.id not in self._loaded:
                try:
                    self._loaded[entry.id] = Predictor.load(entry.path, self.device)
                except MerkitError as exc:
                    raise ModelError(f"model {entry.label} does not load: {exc}") from None
                except Exception as exc:  # a foreign file that torch or onnx chokes on
                    first = (str(exc).strip().splitlines() or [""])[0]
                    raise ModelError(
                        f"model {entry.label} does not load: {type(exc).__name__}: {first}"
                    ) from None
            return self._loaded[entry.id]


@dataclass
class Job:
    id: str
    name: str  # the uploaded file's name
    model: ModelEntry
    predictor: Predictor
    folder: Path  # the upload's temporary folder
    input: Path  # the video file or frame folder inside it
    aligned: bool = False
    status: str = QUEUED
    stage: str | None = None
    done: list[str] = field(default_factory=list)
    error: str | None = None
    error_status: int = INPUT_ERROR
    result: dict[str, Any] | None = None
    views: Views | None = None
    seconds: float | None = None

    def enter(self, stage: str | None) -> None:
        """A stage starts (None: the last one ended): the previous one is done."""
        if self.stage is not None:
            self.done.append(self.stage)
        self.stage = stage

    def plain(self, message: str) -> str:
        """An error sentence naming the upload as the user named it, not its temporary path."""
        return message.replace(str(self.input), self.name).replace(f"{self.folder}/", "")

    def snapshot(self, ahead: int) -> dict[str, Any]:
        """The job as the page polls it (no paths: they are the server's business)."""
        return {
            "id": self.id,
            "name": self.name,
            "model": self.model.label,
            "model_about": self.model.about,
            "status": self.status,
            "stage": self.stage,
            "done": list(self.done),
            "ahead": ahead,
            "error": self.error,
            "seconds": self.seconds,
            "result": self.result,
            "views": self.views.summary() if self.views is not None else None,
        }


class JobQueue:
    """Jobs by id, newest last; a daemon worker runs them one at a time."""

    def __init__(self, keep: int = 20) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closing = threading.Event()
        self._worker = threading.Thread(target=self._work, name="merkit-serve-jobs", daemon=True)
        self._worker.start()

    def new_id(self) -> str:
        return f"j{next(self._ids)}"

    def submit(self, job: Job) -> Job:
        with self._lock:
            self._jobs[job.id] = job
            finished = [j for j in self._jobs.values() if j.status in (DONE, FAILED)]
            for old in finished[: max(0, len(finished) - self.keep)]:
                del self._jobs[old.id]
        self._waiting.put(job)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def snapshot(self, job: Job) -> dict[str, Any]:
        """The job for the page, with how many clips are still to go before it."""
        with self._lock:
            jobs = list(self._jobs.values())
        before = jobs[: jobs.index(job)] if job in jobs else []
        ahead = sum(1 for j in before if j.status in (QUEUED, RUNNING))
        return job.snapshot(ahead if job.status == QUEUED else 0)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def close(self) -> None:
        """Stop the worker after the clip in hand; remove the folders of clips not started."""
        self._closing.set()
        self._waiting.put(None)
        self._worker.join(timeout=60)
        for job in self.all():
            if job.status == QUEUED:
                job.status, job.error = FAILED, "the server stopped before this clip's turn"
                remove(job.folder)

    def _work(self) -> None:
        while (job := self._waiting.get()) is not None and not self._closing.is_set():
            run_job(job)


def run_job(job: Job) -> None:
    """Analyse the clip and build its views, recording stage, result or one-sentence error;
    the upload folder is removed before the job reads as finished."""
    started = time.perf_counter()
    job.status = RUNNING
    try:
        analysis = job.predictor.analyse(job.input, aligned=job.aligned, on_stage=job.enter)
        job.enter("pictures")
        result = dict(analysis.result, input=job.name)  # the name the user knows, not a tmp path
        job.result, job.views = result, build_views(job.predictor, analysis)
        job.enter(None)
        status = DONE
    except MerkitError as exc:
        job.error, status = job.plain(str(exc)), FAILED
    except Exception as exc:  # a bug: one line on the page, the traceback in the server's log
        log.error("job %s (%s) failed:\n%s", job.id, job.name, traceback.format_exc())
        first = (str(exc).strip().splitlines() or [""])[0]
        job.error = job.plain(f"{job.name}: internal error ({type(exc).__name__}: {first})")
        job.error_status, status = INTERNAL_ERROR, FAILED
    finally:
        remove(job.folder)
        job.seconds = round(time.perf_counter() - started, 2)
    job.status = status
