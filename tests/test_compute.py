"""The narrator's compute thread: one long-lived thread for all of the model's work."""

from __future__ import annotations

import threading
import time

import pytest

from game.narrator import fastgen
from game.narrator.compute import IDLE_NAME, ComputeThread
from game.narrator.service import NarratorService
from game.sampling import Sampling


def test_jobs_run_in_order_on_one_thread_named_for_the_job():
    compute = ComputeThread()
    seen = []
    jobs = [compute.submit(lambda i=i: seen.append((i, threading.current_thread())), f"job-{i}")
            for i in range(5)]
    for job in jobs:
        job.join(10)
        assert not job.is_alive() and job.error is None
    assert [i for i, _ in seen] == list(range(5))
    assert len({thread for _, thread in seen}) == 1 and seen[0][1] is not threading.current_thread()
    assert compute.call(lambda: threading.current_thread().name, "asking") == "asking"
    assert compute.call(lambda: 1) == 1 and seen[0][1].name == IDLE_NAME  # named back when idle


def test_call_returns_or_raises_and_runs_at_once_inside_a_job():
    compute = ComputeThread()
    with pytest.raises(ZeroDivisionError):
        compute.call(lambda: 1 / 0)
    # a job that calls again would wait for itself if it were queued: it runs in place
    assert compute.call(lambda: compute.call(lambda: threading.current_thread().name, "inner"), "outer") == "outer"
    assert not compute.is_current()


def test_an_abandoned_job_leaves_later_work_to_a_fresh_thread():
    compute = ComputeThread()
    release, started = threading.Event(), threading.Event()
    stuck = compute.submit(lambda: (started.set(), release.wait(30)), "stuck")
    assert started.wait(10)
    queued = compute.submit(lambda: threading.current_thread(), "queued")  # behind the stuck one
    stuck_thread = next(t for t in threading.enumerate() if t.name == "stuck")
    compute.abandon(stuck)
    queued.join(10)
    assert not queued.is_alive() and queued.result is not stuck_thread  # moved to the fresh thread
    assert compute.call(lambda: threading.current_thread()) is queued.result
    release.set()
    stuck.join(10)
    stuck_thread.join(10)
    assert not stuck_thread.is_alive()  # the old thread ends once its job does
    compute.abandon(stuck)  # done already: nothing changes
    assert compute.call(lambda: threading.current_thread()) is queued.result


def test_loading_warming_and_narrating_all_run_on_the_one_compute_thread(tiny_model_dir, monkeypatch):
    ran = []

    def on_thread(name, original):
        def wrapper(self, *args, **kwargs):
            ran.append((name, threading.current_thread()))
            return original(self, *args, **kwargs)
        return wrapper

    for method in ("from_checkpoint", ):
        original = getattr(fastgen.FastGenerator, method).__func__
        monkeypatch.setattr(fastgen.FastGenerator, method,
                            classmethod(on_thread("load", original)))
    for method in ("warm", "generate"):
        monkeypatch.setattr(fastgen.FastGenerator, method,
                            on_thread(method, getattr(fastgen.FastGenerator, method)))
    spirit = NarratorService(str(tiny_model_dir), device="cpu")
    spirit.start()
    assert spirit.wait(60) and spirit.status == "ready"
    prompt = "The cave is dark.\n> look\n"
    spirit.warm(prompt).join(30)
    assert spirit.narrate(prompt + "The walls drip.\n> listen\n", Sampling(max_new_tokens=4), seed=1,
                          prefix=prompt).error is None
    assert [name for name, _ in ran] == ["load", "warm", "generate"]
    threads = {thread for _, thread in ran}
    assert len(threads) == 1 and threading.current_thread() not in threads
    assert threads.pop().name == IDLE_NAME


def test_a_job_abandoned_before_it_started_never_runs():
    compute = ComputeThread()
    release, started, ran = threading.Event(), threading.Event(), []
    busy = compute.submit(lambda: (started.set(), release.wait(30)), "busy")
    assert started.wait(10)
    queued = compute.submit(lambda: ran.append("queued"), "queued")
    compute.abandon(queued)
    release.set()
    busy.join(10)
    queued.join(10)
    later = compute.submit(lambda: ran.append("later"), "later")
    later.join(10)
    assert ran == ["later"] and queued.cancelled and not queued.is_alive()


def test_a_warm_up_asked_for_while_a_narration_waits_gives_way_to_it(tiny_model_dir, monkeypatch):
    # ctrl+r then ctrl+z in the app: the new narration waits for the lock the old one still
    # holds, and an undo asks for a warm-up meanwhile; that warm-up's job is queued on the
    # compute thread ahead of the narration's, and must not sit there polling for the lock
    spirit = NarratorService(str(tiny_model_dir), device="cpu")
    spirit.start()
    assert spirit.wait(60) and spirit.status == "ready"
    monkeypatch.setattr(spirit, "timeout", 2.0)  # a stall would show as an error after 12 s
    prompt = "The cave is dark.\n> look\n"
    spirit._lock.acquire()  # the old narration, finishing
    out = {}

    def narrate():
        began = time.monotonic()
        out["story"] = spirit.narrate(prompt, Sampling(max_new_tokens=4), seed=1)
        out["seconds"] = time.monotonic() - began

    waiting = threading.Thread(target=narrate)
    waiting.start()
    time.sleep(0.3)  # it waits for the lock now
    job = spirit.warm(prompt)
    time.sleep(0.1)
    spirit._lock.release()
    waiting.join(30)
    job.join(10)
    assert out["story"].error is None and out["story"].new_tokens == 4
    assert out["seconds"] < 5 and not job.is_alive()


def test_at_exit_the_running_job_is_waited_for_and_the_queued_ones_never_run():
    compute = ComputeThread()
    started, ran = threading.Event(), []
    running = compute.submit(lambda: (started.set(), time.sleep(0.3), ran.append("running")), "loading")
    assert started.wait(10)
    queued = compute.submit(lambda: ran.append("queued"), "queued")
    compute.finish(timeout=10)
    assert ran == ["running"] and not running.is_alive()  # torch is not left mid-step
    queued.join(10)
    assert ran == ["running"] and queued.cancelled
    assert compute.call(lambda: 2) == 2  # (a process that goes on after all still has its thread)
