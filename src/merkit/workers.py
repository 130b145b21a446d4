"""One process pool for every parallel stage: prepared clips, training jobs, predicted videos.

Each stage needs the same three guarantees, so they are written once, here:

- Workers are "spawn" processes: no fork after torch or OpenCV have started their threads, and
  the same behaviour on every operating system.
- Ctrl-C: the terminal sends SIGINT to the whole process group. Workers ignore it and the driver
  decides: when anything interrupts it (Ctrl-C, a failed task, a consumer that stops reading),
  queued tasks are cancelled and a stop event is set, which running tasks see at their next
  `report` or `checkpoint` (a training epoch), so the pool ends within seconds.
- Parent death: a worker whose parent dies (kill -9) exits at once instead of computing on as an
  orphan; a thread of each worker watches the parent's process id.

A task talks to its driver with `report(message)` (the driver's `on_message` receives it) and
`checkpoint()`; both do nothing outside a pool, so the same task code runs in-process too.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Event
from typing import Any

# How often a worker looks at its parent, and the driver at the workers' messages (seconds).
PARENT_POLL_S = 0.5
MESSAGE_POLL_S = 0.5


class Stopped(Exception):
    """A task gave up because its driver stopped the pool (Ctrl-C or an error there)."""


_stop: Event | None = None
_messages: SimpleQueue | None = None


def checkpoint() -> None:
    """In a pool task: raise Stopped once the driver has stopped the pool (no-op elsewhere)."""
    if _stop is not None and _stop.is_set():
        raise Stopped


def report(message: object) -> None:
    """In a pool task: hand `message` to the driver's `on_message` (after a `checkpoint`)."""
    checkpoint()
    if _messages is not None:
        _messages.put(message)


def set_threads(threads: int) -> None:
    """Torch threads of this process (torch is imported only by stages that use it)."""
    import torch

    torch.set_num_threads(threads)


def _start_worker(
    stop: Event, messages: SimpleQueue, parent: int, threads: int | None, stage: bytes
) -> None:
    """Worker start: ignore Ctrl-C and watch the parent first, then unpickle and run the stage's
    own initializer (its arguments may import torch: seconds, during which a dead parent must
    already be noticed)."""
    global _stop, _messages
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _stop, _messages = stop, messages
    if threads is not None:
        set_threads(threads)
    initializer, initargs = pickle.loads(stage)
    if initializer is not None:
        initializer(*initargs)


def _exit_with_parent(parent: int) -> None:
    """Exit (without cleanup: nothing is half-written, results go through atomic writes) as
    soon as the parent is gone, whatever this worker is computing."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


class WorkerPool:
    """`workers` spawn processes running the tasks given to `run`; a context manager.

    `threads` sets each worker's torch threads; `initializer(*initargs)` runs once per worker
    (e.g. to keep large shared arrays there instead of sending them with every task).
    """

    def __init__(
        self,
        workers: int,
        *,
        threads: int | None = None,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        context = multiprocessing.get_context("spawn")
        # A SimpleQueue writes at once (no feeder thread), so a task's messages reach the pipe
        # before its result does and the driver never misses the last ones.
        self._stop, self._messages = context.Event(), context.SimpleQueue()
        stage = pickle.dumps((initializer, initargs))
        start_args = (self._stop, self._messages, os.getpid(), threads, stage)
        self._pool = ProcessPoolExecutor(max(1, workers), context, _start_worker, start_args)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, error: type[BaseException] | None, *_: object) -> None:
        if error is not None:  # e.g. Ctrl-C in the code that reads the results
            self._stop.set()
        self.close()

    def close(self) -> None:
        """Wait for running tasks (stopped ones end at their next checkpoint), drop queued ones.

        Messages sent meanwhile are read and dropped, so no task blocks on a full pipe.
        """
        closed = threading.Event()

        def discard() -> None:
            while not closed.wait(MESSAGE_POLL_S / 10):
                self._drain(None)

        reader = threading.Thread(target=discard, daemon=True)
        reader.start()
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            closed.set()
            reader.join()

    def run(
        self,
        task: Callable[..., Any],
        arguments: Sequence[tuple[Any, ...]],
        on_message: Callable[[Any], None] | None = None,
    ) -> Iterator[tuple[int, Future]]:
        """Yield `(index, finished future)` of `task(*arguments[index])` as tasks finish.

        Messages the tasks `report` reach `on_message` in the driver. Whatever ends the
        iteration early (an exception here or in the consumer, or the consumer closing the
        generator) stops the pool: queued tasks never start, running ones end at their next
        checkpoint.
        """
        futures = {self._pool.submit(task, *args): i for i, args in enumerate(arguments)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=MESSAGE_POLL_S, return_when=FIRST_COMPLETED)
                self._drain(on_message)
                for future in done:
                    # handed over and forgotten: a finished task's result lives only as long
                    # as the consumer keeps it (a pool over many clips holds none of them)
                    yield futures.pop(future), future
            self._drain(on_message)
        except BaseException:
            self._stop.set()
            for future in pending:
                future.cancel()
            raise

    def _drain(self, on_message: Callable[[Any], None] | None) -> None:
        while not self._messages.empty():
            message = self._messages.get()
            if on_message is not None:
                on_message(message)
