"""The one long-lived thread that runs the narrator's model work.

Torch computes on the CPU with OpenMP (libgomp), which gives every OS thread
that starts a parallel region a team of worker threads of its own, kept until
that thread ends. While a process holds more such threads than the machine has
cores, libgomp stops letting a team's idle workers spin between regions and
puts them to sleep instead, and each of the ~100 small regions of a token then
pays for waking them. Measured on 2 cores (distilgpt2's shape, int8, 880-token
prompt): decode fell from 110-145 to 84-116 tokens/s while a second, idle team
was alive. A thread per generation and per warm-up, or a model loaded on the
main thread, made exactly that second team.

So the model is loaded, warmed and run here: `COMPUTE`, one thread for the
whole process, one job at a time in the order given. A job that never returns
(a hung model) is `abandon`ed: the jobs after it go to a fresh thread, and the
stuck one ends once its job does. When Python exits, the job running is waited
for and the queued ones are dropped (`finish`). This module imports neither
torch nor transformers.
"""

from __future__ import annotations

import atexit
import queue
import threading
from typing import Any, Callable

IDLE_NAME = "storyteller-compute"
EXIT_WAIT = 30.0  # seconds a process exiting waits for the job running (a load takes a few)


class Job:
    """A piece of work given to `ComputeThread.submit`: `join()` and `is_alive()` as a thread's,
    then `result` (what the function returned) or `error` (what it raised)."""

    def __init__(self, fn: Callable[[], Any], name: str):
        self._fn, self.name = fn, name
        self._done = threading.Event()
        self.cancelled = False  # abandoned before it started: it never runs
        self.result: Any = None
        self.error: BaseException | None = None

    def join(self, timeout: float | None = None) -> None:
        """Wait until the job has run (or `timeout` seconds have passed)."""
        self._done.wait(timeout)

    def is_alive(self) -> bool:
        """True until the job has run."""
        return not self._done.is_set()

    def _run(self) -> None:
        if self.cancelled:
            self._done.set()
            return
        thread = threading.current_thread()
        thread.name = self.name  # what a stack dump, or a test, sees while the job runs
        try:
            self.result = self._fn()
        except BaseException as error:  # noqa: BLE001 - kept for whoever joins the job
            self.error = error
        finally:
            thread.name = IDLE_NAME
            self._done.set()


class ComputeThread:
    """One daemon thread that runs jobs one after another (started on first use)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue | None = None
        self._running: Job | None = None  # the job the (current) thread runs now

    def submit(self, fn: Callable[[], Any], name: str = IDLE_NAME) -> Job:
        """Run `fn()` on the compute thread after the jobs given before it; the thread is
        named `name` while it runs."""
        job = Job(fn, name)
        with self._lock:
            if self._jobs is None:
                self._start()
            self._jobs.put(job)
        return job

    def call(self, fn: Callable[[], Any], name: str = IDLE_NAME) -> Any:
        """Run `fn()` on the compute thread and return what it returns (or raise what it raises).
        Called on the compute thread itself (from inside a job), it runs `fn()` at once."""
        if self.is_current():
            return fn()
        job = self.submit(fn, name)
        job.join()
        if job.error is not None:
            raise job.error
        return job.result

    def is_current(self) -> bool:
        """True on the compute thread (or an abandoned one), where joining a job would wait for
        itself."""
        return getattr(threading.current_thread(), "_storyteller_compute", False)

    def abandon(self, job: Job) -> None:
        """`job` has not returned and will not be waited for: if it has not started it never
        will; if it is running, the jobs after it, and all later ones, go to a fresh thread, and
        the old one ends once `job` does."""
        with self._lock:
            job.cancelled = True  # still queued: skipped when its turn comes
            if not job.is_alive() or self._jobs is None:
                return
            old = self._jobs
            self._start()
            while True:
                try:
                    waiting = old.get_nowait()
                except queue.Empty:
                    break
                if waiting is not None:
                    self._jobs.put(waiting)
            old.put(None)

    def finish(self, timeout: float = EXIT_WAIT) -> None:
        """Wait up to `timeout` seconds for the job running now; the jobs still queued never run.
        Called when Python exits: torch must not be in the middle of a computation on a daemon
        thread then (the process would abort with "terminate called ..."); a narrator service
        first stops its warm-up (one chunk), and a narration ends with its game."""
        with self._lock:
            waiting = []
            while self._jobs is not None:
                try:
                    waiting.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            for job in waiting:
                if job is not None:
                    job.cancelled = True
                    self._jobs.put(job)  # skipped, and done, when its turn comes
            running = self._running
        if running is not None and not self.is_current():
            running.join(timeout)

    def _start(self) -> None:
        jobs = self._jobs = queue.SimpleQueue()

        def run() -> None:
            while (job := jobs.get()) is not None:
                with self._lock:
                    moved = jobs is not self._jobs  # this thread was abandoned as it took `job`
                    if moved:
                        self._jobs.put(job)
                if not moved:
                    self._running = job
                    job._run()
                    if self._running is job:  # (an abandoned thread must not clear a fresh one's)
                        self._running = None

        thread = threading.Thread(target=run, name=IDLE_NAME, daemon=True)
        thread._storyteller_compute = True
        thread.start()


COMPUTE = ComputeThread()
"""The process's compute thread: every narrator service loads, warms and generates on it."""
atexit.register(COMPUTE.finish)  # registered before the services' own hooks, so it runs after them
