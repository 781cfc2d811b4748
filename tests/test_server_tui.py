"""The app with the Spirit on a REAL llama.cpp server: it narrates, Esc closes the stream, and
the inspector (F2) says which API, window and counts were used. The Pilot helpers are the
app tests' own (tests/test_tui.py)."""

from __future__ import annotations

import threading
import time

from game.narration import make_turn_narrator
from game.personality import load_personalities
from game.settings import Settings
from game.tui.screens.inspector import ContextInspector
from tests.server_double import FaultyProxy
from tests.test_tui import act, build, game, kinds, opens, running, status, wait_until


def recorded(narrator) -> list:
    """The narrator's results, as its real `run` returns them."""
    results = []
    run = narrator.run

    def recording_run(*args, **kwargs):
        results.append(run(*args, **kwargs))
        return results[-1]

    narrator.run = recording_run
    return results


async def test_the_app_narrates_through_the_server_and_f2_says_how(llama_server):
    personalities = load_personalities()[0]
    narrator = make_turn_narrator(Settings(sampling={"max_new_tokens": 8}), personalities,
                                  server=llama_server.url, seed=1)
    results = recorded(narrator)
    app = build(personalities, narrator)
    counted_on = []  # the threads that asked the server to count tokens
    async with running(app, wake=True) as pilot:
        counter = narrator.service.tokenizer
        encode = counter.encode
        counter.encode = lambda text: (counted_on.append(threading.current_thread()), encode(text))[1]
        assert app.notes[0].message == f"The Storyteller Spirit is awake (tiny-gpt2 on server 127.0.0.1:{llama_server.port})."
        assert app.notes[1].message == ("This server (llama-cpp-python) does not take no_repeat_ngram_size: the "
                                        "personality's value for it cannot be used.")  # named once
        await act(pilot, "take the lantern")
        await act(pilot, "go north")
        assert len(results) == 2 and all(r.error is None and not r.cancelled for r in results)
        assert kinds(app, "narration") == [r.text for r in results if r.text]
        # The server counts over the network: never on the app's own thread (the UI never waits on it).
        assert counted_on and threading.main_thread() not in counted_on
        assert status(app).context_window == 1024
        await opens(pilot, "f2", ContextInspector)
        about = str(app.screen.query_one("#narrator-about").render())
        assert about.startswith(f"server {llama_server.url}, model tiny-gpt2: completion API (auto: the server "
                                "reports no chat template); window 1024 tokens")
        assert "counts: the server's tokenizer (/extras/tokenize)" in about
        assert sum("does not take" in note.message for note in app.notes) == 1


async def test_esc_closes_the_servers_stream_at_once(llama_server):
    """A big model far away writes slowly (a proxy in front of the real server sends a word every
    50 ms); Esc ends the turn's narration and the server sees the connection closed at once."""
    personalities = load_personalities()[0]
    with FaultyProxy(llama_server.root, "slow") as proxy:
        narrator = make_turn_narrator(Settings(sampling={"max_new_tokens": 400}), personalities,
                                      server=proxy.url, seed=1)
        results = recorded(narrator)
        app = build(personalities, narrator)
        async with running(app, wake=True) as pilot:
            screen = game(app)
            await act(pilot, "take the lantern", settle=False)
            await wait_until(pilot, lambda: screen.narrating and screen.streamed, what="the first streamed words")
            assert status(app).spirit == "narrating" and not results
            pressed = time.monotonic()
            await pilot.press("escape")
            await wait_until(pilot, lambda: results and proxy.hung_up, what="the stream to close")
            assert results[0].cancelled and results[0].error is None and results[0].new_tokens < 400
            assert proxy.hung_up[0] - pressed < 2.0  # the server side saw the client go
            assert kinds(app, "narration") == [] and kinds(app, "change") == ["You now have a cursor lantern."]
            narrator.sampling = narrator.sampling.with_values(max_new_tokens=8)
            await act(pilot, "go north")  # the next turn is narrated in full
            assert len(results) == 2 and not results[1].cancelled and results[1].error is None
            assert results[1].raw == " word" * 8 and kinds(app, "narration") == [results[1].text]
            assert results[1].text.startswith("word word")  # (cleaning drops the cut-off last word)


async def test_a_server_that_was_down_is_tried_again_on_the_next_turn(tiny_gguf, llama_server):
    from tests.llama_server import LlamaServer

    personalities = load_personalities()[0]
    server = LlamaServer(tiny_gguf)  # its port is chosen; it is not started yet
    narrator = make_turn_narrator(Settings(sampling={"max_new_tokens": 8}), personalities, server=server.url, seed=1)
    app = build(personalities, narrator)
    try:
        async with running(app) as pilot:
            await wait_until(pilot, lambda: app.spirit_status == "silent", what="the Spirit to find no server")
            [note] = [n for n in app.notes if n.title == "The Storyteller Spirit is silent"]
            assert note.message == "The quest's own words go on. F1 says why."
            assert app.spirit_reason == (f"cannot reach the server at {server.url}: connection refused (is it "
                                         "running?)")
            await act(pilot, "take the lantern")
            assert kinds(app, "narration") == [] and kinds(app, "change") == ["You now have a cursor lantern."]
            server.start()
            await act(pilot, "go north", settle=False)
            await wait_until(pilot, lambda: kinds(app, "narration") and app.spirit_status == "ready"
                             and game(app).narrating is None, what="the turn narrated by the server, back up")
            assert kinds(app, "narration")[-1]
            assert [n.title for n in app.notes].count("The Storyteller Spirit is silent") == 1
    finally:
        server.stop()
