"""Live reload: edits to a quest carry the game over; a broken edit keeps the old version."""

from __future__ import annotations

import io
import os
import textwrap

from game.engine import Engine
from game.live_reload import QuestWatcher, reload_engine
from game.plain import PlainGame
from game.world.loader import load_quest

QUEST = textwrap.dedent("""\
    id: reload-test
    title: Reload Test
    start: hall
    items:
      key: {name: a small key}
      coin: {name: a coin}
    scenes:
      hall:
        title: The Hall
        description: A bare hall.
        choices:
          - label: Take the key
            words: [key]
            effects: [{give: key}]
          - label: Take the coin
            words: [coin]
            effects: [{give: coin}]
        exits:
          - {label: Go out, words: [out], to: yard}
      yard:
        title: The Yard
        description: A yard.
        ending: done
    endings:
      done: {title: Done, text: You are done.}
    """)


def write(path, text):
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a visibly newer file


def test_reload_keeps_the_state_and_reports_what_changed(tmp_path):
    path = tmp_path / "q.yaml"
    write(path, QUEST)
    engine = Engine(load_quest(path), seed=1)
    engine.act("key")
    engine.act("coin")
    write(path, QUEST.replace("  coin: {name: a coin}\n", "").replace(
        "      - label: Take the coin\n        words: [coin]\n        effects: [{give: coin}]\n", "")
        .replace("description: A bare hall.", "description: A hall, newly swept."))
    result = reload_engine(engine, path)
    assert result.engine is not None
    new = result.engine
    assert new.state.inventory == ["key"]  # the coin no longer exists
    assert new.state.turn == 2 and len(new.history) == 2
    assert any("coin" in note for note in result.notes)
    assert any("changed scenes: hall" in note for note in result.notes)
    assert new.description() == "A hall, newly swept."
    assert new.undo() and new.state.turn == 1  # undo still works after a reload


def test_a_broken_edit_keeps_the_old_quest_playable(tmp_path):
    path = tmp_path / "q.yaml"
    write(path, QUEST)
    engine = Engine(load_quest(path), seed=1)
    write(path, QUEST.replace("to: yard", "to: yrad"))
    result = reload_engine(engine, path)
    assert result.engine is None
    assert any(p.line == 19 and "unknown scene 'yrad'" in p.message for p in result.problems)
    assert engine.act("out").ending is not None  # the old version plays on


def test_removing_the_current_scene_is_refused(tmp_path):
    path = tmp_path / "q.yaml"
    write(path, QUEST.replace("ending: done", "exits: [{label: Back, words: [back], to: hall}]"))
    engine = Engine(load_quest(path), seed=1)
    engine.act("out")
    assert engine.state.scene == "yard"
    text = QUEST.replace("to: yard", "to: hall")
    write(path, text[:text.index("  yard:")] + text[text.index("endings:"):])
    result = reload_engine(engine, path)
    assert result.engine is None
    assert any("'yard' no longer exists" in p.message for p in result.problems)


def test_watcher_notices_a_save_once(tmp_path):
    path = tmp_path / "q.yaml"
    write(path, QUEST)
    watcher = QuestWatcher([path])
    assert not watcher.poll()
    write(path, QUEST + "\n")
    assert watcher.poll()
    assert not watcher.poll()


class EditingInput(io.StringIO):
    """Feeds actions; before the second one, the author saves an edit."""

    def __init__(self, path, lines, edit):
        super().__init__(lines)
        self.path, self.edit, self.calls = path, edit, 0

    def readline(self, *args):
        self.calls += 1
        if self.calls == 2:
            write(self.path, self.edit)
        return super().readline(*args)


def test_plain_watch_reloads_between_actions(tmp_path):
    path = tmp_path / "q.yaml"
    write(path, QUEST)
    out = io.StringIO()
    inp = EditingInput(path, "key\nlook\n", QUEST.replace("title: The Hall", "title: The Great Hall"))
    code = PlainGame(Engine(load_quest(path), seed=1), out=out, inp=inp, watch=True).run()
    assert code == 0
    text = out.getvalue()
    assert "(The quest was reloaded: changed scenes: hall.)" in text
    assert "== The Great Hall ==" in text
