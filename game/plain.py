"""Plain-terminal play: reads actions line by line, prints each turn as text.

Works in pipes, scripts and screen readers: no colours, no cursor tricks. When
standard input is not a terminal, each action is echoed as "> action" so the
output reads as a transcript. Ends cleanly (exit 0) at end of input or when the
quest ends. Extra commands: `undo`, `quit`.
"""

from __future__ import annotations

import signal
import sys
import textwrap
import threading
from contextlib import contextmanager
from typing import Callable, TextIO

from game.engine import Engine, Para, TurnResult
from game.i18n import _
from game.narrator import cleaning
from game.phrases import QUIT_WORDS, UNDO_WORDS  # undo is never "u": the parser reads it as "up"
from game.safe_text import decoded, inert, inert_line
from game.session import Session

# Called after each turn's authored text: (engine, result, write) -> whether it narrated.
NarrateHook = Callable[[Engine, TurnResult, Callable[[str], None]], None]


class PlainGame:
    def __init__(self, game: "Engine | Session", out: TextIO | None = None, inp: TextIO | None = None,
                 narrate: NarrateHook | None = None, width: int = 78, watch: bool = False,
                 autosave: bool = False):
        self.session = game if isinstance(game, Session) else Session(game.quest, game)
        engine = self.session.engine
        self.autosave = autosave
        self.watcher = None
        if watch:
            from game.live_reload import QuestWatcher

            self.watcher = QuestWatcher(engine.quest.files)
        self.out = out or sys.stdout
        self.inp = inp or sys.stdin
        try:  # bytes that are not UTF-8 are kept as escapes, then made '�' by `decoded`
            self.inp.reconfigure(errors="surrogateescape")
        except (AttributeError, ValueError, OSError):
            pass
        self.narrate = narrate
        self.width = width
        self.echo = not _isatty(self.inp)

    @property
    def engine(self) -> Engine:
        return self.session.engine

    def save(self) -> None:
        """Autosave after a turn; a failure is said once per turn and play goes on."""
        if not self.autosave:
            return
        try:
            self.session.autosave()
        except OSError as exc:
            self.write(_("(Autosave failed: {reason}. The previous autosave is intact.)").format(
                reason=exc.strerror or exc) + "\n")

    def write(self, text: str = "") -> None:
        self.out.write(inert(text))
        self.out.flush()

    def para(self, text: str, indent: str = "") -> None:
        for block in text.strip("\n").split("\n"):
            wrapped = textwrap.fill(block, self.width, initial_indent=indent,
                                    subsequent_indent=indent) if block.strip() else ""
            self.write(wrapped + "\n")

    def show(self, result: TurnResult) -> bool:
        """Show a turn (narrating it when there is a Spirit); whether it was narrated."""
        for p in result.paragraphs:
            self.render(p)
        told = False
        if self.narrate is not None and result.narrate:
            told = self.narrate(self.engine, result, self.write)
        if result.kind == "free" and not told:
            self.para(self.engine.say("unanswered"))
        if not result.ending and result.kind not in ("empty",):
            self.show_options(result)
        return told

    def render(self, p: Para) -> None:
        if p.kind == "scene-title":
            self.write(f"\n== {inert_line(p.text)} ==\n")
        elif p.kind == "ending-title":
            self.write(f"\n*** {inert_line(p.text)} ***\n")
        elif p.kind == "change":
            self.para(p.text, "  * ")
        else:
            self.para(p.text)

    def show_options(self, result: TurnResult) -> None:
        if result.options:
            self.write("\n")
            for o in result.options:
                self.write(f"  {o.number}. {inert_line(o.label)}\n")

    def run(self) -> int:
        """Play until the input ends, the player quits or the quest ends (exit 0).

        SIGINT, SIGTERM and SIGHUP autosave the game as it is and end with 128 + the
        signal's number (130, 143, 129), never a traceback.
        """
        with _signals_as_interrupts() as caught:
            try:
                return self._play()
            except KeyboardInterrupt:
                self.save()
                try:
                    self.out.write("\n")
                    self.out.flush()
                except (OSError, ValueError):
                    pass
                return 128 + (caught[-1] if caught else signal.SIGINT)

    def _play(self) -> int:
        quest = self.engine.quest
        self.write(inert_line(quest.title) + "\n")
        if quest.author:
            self.write(inert_line(self.engine.say("by", author=quest.author)) + "\n")
        self.show(self.engine.opening())
        if self.engine.ended:
            self.write("\n" + self.engine.say("the_end") + "\n")
            return 0
        while True:
            if not self.echo:
                self.write("\n> ")
            line = decoded(self.inp.readline())  # invalid UTF-8 typed or piped in becomes '�'
            if not line:
                self.write("\n")
                return 0
            action = line.rstrip("\n")
            if self.echo:
                self.write(f"\n> {action}\n")
            if self.watcher is not None and self.watcher.poll():
                self.reload()
            word = action.strip().lower()
            if word in QUIT_WORDS:
                return 0
            if word in UNDO_WORDS:
                if self.session.undo():
                    self.write(self.engine.say("undone") + "\n")
                    self.show(self.engine.opening())
                else:
                    self.write(self.engine.say("undo_start") + "\n")
                continue
            result = self.engine.act(action)
            if result.counts:
                self.save()  # the turn is kept as soon as it is taken, before it is narrated
            told = self.show(result)
            if result.counts and told:
                self.save()  # and again with its narration
            if result.ending is not None:
                self.write("\n" + self.engine.say("the_end") + "\n")
                return 0

    def reload(self) -> None:
        """The quest's files changed: carry the game over, or keep the old version."""
        result = self.session.reload()
        if result.engine is None:
            self.write(_("(The quest file changed but cannot be loaded; still playing the old version.)") + "\n")
            for problem in result.problems:
                if problem.severity == "error":
                    self.write(f"  {problem.format()}\n")
            return
        self.watcher.watch(self.engine.quest.files)
        self.write(_("(The quest was reloaded: {notes}.)").format(notes="; ".join(result.notes)) + "\n")


@contextmanager
def _signals_as_interrupts():
    """SIGTERM and SIGHUP raise KeyboardInterrupt like SIGINT while playing (main thread
    only); yields the list the signal numbers caught are appended to."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def interrupt(signum, frame):
        caught.append(signum)
        raise KeyboardInterrupt

    wanted = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    before = {sig: signal.signal(sig, interrupt) for sig in wanted}
    try:
        yield caught
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainSpirit:
    """Narrates turns in plain mode: streams the Spirit's words sentence by sentence.

    Only complete sentences are printed while the model writes, so what reaches
    a pipe or a screen reader is never taken back. If the service cannot load,
    it says so once and the game goes on with the quest's authored text.
    """

    PREFIX = "~ "

    def __init__(self, narrator, out_err: TextIO | None = None):
        self.narrator = narrator  # a game.narration.TurnNarrator
        self.err = out_err or sys.stderr
        self.told_silent: str | bool | None = False
        self.told: set[str] = set()

    def __call__(self, engine: Engine, result: TurnResult, write: Callable[[str], None]) -> bool:
        service = self.narrator.service
        retry = service.status == "silent" and getattr(service, "can_retry", False)  # a server may be back
        if service.status in ("idle", "loading") or retry:
            if service.status != "loading":
                service.start()
            if not service.wait(0.3):
                self.err.write(_("(The Storyteller Spirit is waking...)") + "\n")
                self.err.flush()
                service.wait()
        if service.status != "ready":
            if self.told_silent != service.reason:  # each new reason once
                self.told_silent = service.reason
                write("\n" + _("(The Storyteller Spirit is silent: {reason}. The quest's own words go on.)")
                      .format(reason=service.reason) + "\n")
            return False
        notes_for = getattr(service, "notes_for", None)  # a server: sampling values it cannot take
        for note in notes_for(self.narrator.sampling) if notes_for else ():
            if note not in self.told:
                self.told.add(note)
                write(f"\n(Storyteller Spirit: {note})\n")
        try:
            prepared = self.narrator.prepare(engine, result)
        except ValueError as exc:  # the model's window cannot hold a prompt at all
            write("\n" + _("(The Spirit cannot narrate this turn: {reason}.)").format(reason=exc) + "\n")
            return False
        shown = ""
        raw = ""

        def on_chunk(chunk: str) -> None:
            nonlocal raw, shown
            raw += chunk
            visible = cleaning.clean(raw, truncated=True)
            if visible.startswith(shown) and len(visible) > len(shown):
                write((self.PREFIX if not shown else "") + visible[len(shown):])
                shown = visible

        def on_restart(reason: str) -> None:
            nonlocal raw, shown
            if shown:
                write("\n" + _("(The Spirit falters, and begins again.)") + "\n")
            raw, shown = "", ""

        write("\n")
        narration = self.narrator.run(prepared, on_chunk=on_chunk, on_restart=on_restart)
        final = narration.text
        if final.startswith(shown):
            if final[len(shown):]:
                write((self.PREFIX if not shown else "") + final[len(shown):])
        elif final:
            write("\n" + self.PREFIX + final)
        if shown or final:
            write("\n")
        if narration.error:
            write(_("(The Spirit lost its words: {error})").format(error=narration.error) + "\n")
        problem = getattr(self.narrator, "take_log_problem", lambda: None)()
        if problem:
            self.err.write(inert_line(f"storyteller: {problem}") + "\n")
            self.err.flush()
        engine.set_narration(final)
        self.narrator.warm(engine)  # the next prompt's start, computed while the player types
        return bool(final)
