"""`storyteller validate PATH...`: exit 0 and one summary line per valid quest; exit 1 and
`path:line:col: error: message` per problem, then a count; never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from game.cli import main
from tests.conftest import ROOT
from tests.helpers import write_quest

PROBLEM_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")

GOOD = """\
id: lantern-test
title: The Lantern Test
start: cellar
flags: {door_open: false}
items:
  lantern: {name: a brass lantern}
scenes:
  cellar:
    title: The Cellar
    description: A damp cellar.
    choices:
      - label: Take the lantern
        if: {lacks: lantern}
        effects: [{give: lantern}, {set: door_open}]
    exits:
      - label: North
        to: hall
        if: {has: lantern, flag: door_open}
  hall:
    title: The Hall
    description: A hall.
    ending: out
endings:
  out: {title: Out, text: You made it.}
"""

# two mistakes: an exit to a scene that does not exist, and a typo in a key
BAD = GOOD.replace("to: hall", "to: hal").replace("    description: A hall.", "    descripton: A hall.")


def run_validate(capsys, *paths) -> tuple[int, list[str], str]:
    code = main(["validate", *map(str, paths)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out.splitlines(), err


@pytest.fixture
def here(tmp_path, monkeypatch):
    """Work inside tmp_path so paths print as the user typed them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_valid_quests_print_one_summary_line_each(here, capsys):
    write_quest(here, "lantern.yaml", GOOD)
    write_quest(here, "woods/quest.yaml", GOOD.replace("id: lantern-test", "id: woods")
          .replace("title: The Lantern Test", "title: Woods") + "include: [more.yaml]\n")
    write_quest(here, "woods/more.yaml", "scenes:\n  attic: {title: Attic, description: Dusty.}\n")
    code, lines, err = run_validate(capsys, "lantern.yaml", "woods")
    assert code == 0 and err == ""  # warnings do not fail validation without --strict
    assert lines[0] == 'lantern.yaml: ok: "The Lantern Test" (lantern-test): 2 scenes, 1 ending, 1 item, 1 flag'
    assert lines[1].startswith("woods/more.yaml:2:3: warning: scene 'attic' can never be reached")
    assert lines[2].startswith("woods/more.yaml:2:3: warning: scene 'attic' has no way out")
    assert lines[3:] == ['woods/quest.yaml: ok: "Woods" (woods): 3 scenes, 1 ending, 1 item, 1 flag',
                         "0 errors, 2 warnings"]
    assert run_validate(capsys, "--strict", "woods")[0] == 1


def test_invalid_quest_prints_each_problem_at_its_line_then_a_count(here, capsys):
    write_quest(here, "bad.yaml", BAD)
    code, lines, err = run_validate(capsys, "bad.yaml")
    assert code == 1 and err == ""
    assert lines == [
        "bad.yaml:17:13: error: unknown scene 'hal' (did you mean 'hall'?); defined scenes: cellar, hall",
        # a missing key is reported where its mapping starts: the scene's first key
        "bad.yaml:20:5: error: scene 'hall' is missing the required key 'description'",
        "bad.yaml:21:5: error: unknown key 'descripton' in scene 'hall' (did you mean 'description'?); "
        "allowed keys: choices, description, ending, exits, first_visit, hints, on_enter, recap, responses, things, title",
        "3 errors, 0 warnings",
    ]


def test_problems_come_in_file_order_and_every_line_has_the_format(here, capsys):
    write_quest(here, "bad.yaml", BAD)
    code, lines, _ = run_validate(capsys, "bad.yaml")
    *problem_lines, count = lines
    parsed = [PROBLEM_LINE.match(line) for line in problem_lines]
    assert all(parsed), problem_lines
    positions = [(int(m["line"]), int(m["col"])) for m in parsed]
    assert positions == sorted(positions) == [(17, 13), (20, 5), (21, 5)]
    assert {m["path"] for m in parsed} == {"bad.yaml"}
    assert count == "3 errors, 0 warnings" and code == 1


def test_good_and_bad_together_exit_1_and_report_both(here, capsys):
    write_quest(here, "good.yaml", GOOD)
    write_quest(here, "bad.yaml", GOOD.replace("start: cellar", "start: cellr"))
    code, lines, _ = run_validate(capsys, "good.yaml", "bad.yaml")
    assert code == 1
    assert lines == [
        'good.yaml: ok: "The Lantern Test" (lantern-test): 2 scenes, 1 ending, 1 item, 1 flag',
        "bad.yaml:3:8: error: unknown scene 'cellr' (did you mean 'cellar'?); defined scenes: cellar, hall",
        "1 error, 0 warnings",
    ]


# Each kind of broken file: (file content, expected line, col, words in the message).
BROKEN = {
    "syntax": (GOOD.replace("title: The Hall", "title: The Hall: east wing"), 20, 20, "YAML syntax error"),
    "duplicate-key": (GOOD.replace("    ending: out", "    ending: out\n    title: Again"), 23, 5,
                      "duplicate key 'title' (first defined at line 20)"),
    "tab": (GOOD.replace("    ending: out", "\tending: out"), 22, 1, "tab"),
    "empty": ("# todo\n", 1, 1, "file is empty"),
    "not-a-mapping": ("- id: x\n- title: y\n", 1, 1, "a quest file must be a mapping"),
    "python-tag": (GOOD.replace("title: The Hall", "title: !!python/object/apply:os.system ['touch MARKER']"),
                   20, 12, "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    "wrong-type": (GOOD.replace("title: The Hall", "title: [The, Hall]"), 20, 12,
                   "'title' in scene 'hall' must be text, not a list"),
    "unknown-item": (GOOD.replace("{has: lantern,", "{has: lamp,"), 18, 19, "unknown item 'lamp'"),
    "unknown-flag": (GOOD.replace("{lacks: lantern}", "{flag: door_opn}"), 13, 20,
                     "unknown flag 'door_opn' (did you mean 'door_open'?)"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_broken_file_gives_one_located_error(here, capsys, kind):
    text, line, col, words = BROKEN[kind]
    (here / f"{kind}.yaml").write_text(text, encoding="utf-8")
    code, lines, err = run_validate(capsys, f"{kind}.yaml")
    assert code == 1 and err == ""
    assert len(lines) == 2, lines
    m = PROBLEM_LINE.match(lines[0])
    assert m and (m["path"], int(m["line"]), int(m["col"])) == (f"{kind}.yaml", line, col), lines[0]
    assert words in m["message"]
    assert lines[1] == "1 error, 0 warnings"
    assert not (here / "MARKER").exists()


def test_non_utf8_and_huge_files(here, capsys):
    (here / "latin1.yaml").write_bytes(GOOD.replace("A damp cellar.", "A damp caf\xe9.").encode("latin-1"))
    (here / "huge.yaml").write_text(GOOD + "summary: " + "x" * 3_000_000 + "\n")
    code, lines, _ = run_validate(capsys, "latin1.yaml", "huge.yaml")
    assert code == 1
    assert lines[0].startswith("latin1.yaml:10:28: error: byte 0xe9 is not valid UTF-8")
    assert lines[1].startswith("huge.yaml:1:1: error: file is larger than")
    assert lines[2] == "2 errors, 0 warnings"


def test_missing_path_and_bad_include(here, capsys):
    write_quest(here, "q/quest.yaml", GOOD + "include: [../outside.yaml]\n")
    write_quest(here, "outside.yaml", "items: {k: K}\n")
    code, lines, _ = run_validate(capsys, "nope.yaml", "q")
    assert code == 1
    assert lines == [
        "nope.yaml:1:1: error: file not found",
        "q/quest.yaml:25:11: error: included file '../outside.yaml' lies outside the quest's folder; "
        "a quest may only include files inside its own folder",
        "2 errors, 0 warnings",
    ]


def test_alias_bomb_through_the_cli(here, capsys):
    lines = ["id: bomb", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]" for i in range(1, 10)]
    (here / "bomb.yaml").write_text("\n".join(lines) + "\n")
    code, out, _ = run_validate(capsys, "bomb.yaml")
    assert code == 1 and len(out) == 2
    assert out[0].startswith("bomb.yaml:") and "values" in out[0] and out[1] == "1 error, 0 warnings"


def test_validate_needs_a_path(capsys):
    with pytest.raises(SystemExit) as info:
        main(["validate"])
    assert info.value.code == 2
    assert "PATH" in capsys.readouterr().err


def test_python_m_game_validate_in_a_real_process(tmp_path):
    write_quest(tmp_path, "good.yaml", GOOD)
    write_quest(tmp_path, "bad.yaml", BAD)
    write_quest(tmp_path, "evil.yaml", GOOD.replace(
        "title: The Hall", "title: !!python/object/apply:os.system ['touch MARKER']"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "game", "validate", "good.yaml", "bad.yaml", "evil.yaml"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith('good.yaml: ok: "The Lantern Test" (lantern-test): 2 scenes')
    problems = lines[1:-1]
    assert [PROBLEM_LINE.match(line)["path"] for line in problems] == ["bad.yaml"] * 3 + ["evil.yaml"]
    assert problems[-1].startswith("evil.yaml:20:12: error: tag ")
    assert lines[-1] == "4 errors, 0 warnings"
    assert not (tmp_path / "MARKER").exists()

    ok = subprocess.run([sys.executable, "-m", "game", "validate", "good.yaml"],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stderr == ""
    assert ok.stdout.splitlines() == [
        'good.yaml: ok: "The Lantern Test" (lantern-test): 2 scenes, 1 ending, 1 item, 1 flag']


# -- the author's loop stays quick ---------------------------------------------------------

@pytest.mark.parametrize("quest", ["cloak-of-darkness.yaml", "call-of-the-storyteller.yaml", "broken"])
def test_validate_never_imports_transformers_or_torch(quest, tmp_path):
    """The token budget is counted with `tokenizers` reading GPT-2's vocabulary files, and a broken
    file is reported before any tokenizer loads: validating is quick, token budget included."""
    path = ROOT / "quests" / quest if quest != "broken" else tmp_path / "broken.yaml"
    if quest == "broken":
        path.write_text("id: [\n", encoding="utf-8")
    code = ("import json, sys, time; from game.cli import main; t = time.perf_counter(); "
            f"rc = main(['validate', '--strict', {str(path)!r}]); took = time.perf_counter() - t; "
            "print('RESULT', json.dumps([rc, sorted(m for m in ('transformers', 'torch', 'tokenizers') "
            "if m in sys.modules), took]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8",
                         cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    rc, imported, took = json.loads(run.stdout.split("RESULT", 1)[1])
    assert "note:" not in run.stderr, run.stderr  # the budget check ran: it was not skipped
    if quest == "broken":
        assert rc == 1 and imported == []  # no tokenizer loads for a file that does not load
    else:
        assert rc == 0 and imported == ["tokenizers"]
    assert took < 3.0  # well under a second on a quiet machine; generous for a busy one
def test_a_folder_of_quests_validates_each_file_with_one_exit_status(here, capsys):
    write_quest(here, "shelf/a.yaml", GOOD)
    write_quest(here, "shelf/b.yml", GOOD.replace("id: lantern-test", "id: b-test"))
    write_quest(here, "shelf/woods/quest.yaml", GOOD.replace("id: lantern-test", "id: woods"))
    code, lines, err = run_validate(capsys, "shelf")
    assert code == 0, lines
    assert [line.split(":")[0] for line in lines] == ["shelf/a.yaml", "shelf/b.yml", "shelf/woods/quest.yaml"]
    assert all(": ok: " in line for line in lines)
    # One bad file: every file is still reported, and the one status is 1.
    write_quest(here, "shelf/c.yaml", BAD.replace("id: lantern-test", "id: c-test"))
    code, lines, err = run_validate(capsys, "shelf")
    assert code == 1
    assert sum(": ok: " in line for line in lines) == 3
    assert any(line.startswith("shelf/c.yaml:") and ": error: " in line for line in lines)
    assert re.match(r"\d+ errors?, 0 warnings", lines[-1])
    # --strict: a warning anywhere fails the folder.
    write_quest(here, "warn/w.yaml", GOOD.replace("scenes:\n", "scenes:\n  attic: {title: Attic, description: Dusty.}\n"))
    write_quest(here, "warn/ok.yaml", GOOD.replace("id: lantern-test", "id: ok-test"))
    assert run_validate(capsys, "warn")[0] == 0
    assert run_validate(capsys, "--strict", "warn")[0] == 1
    # An empty folder says what it looked for.
    (here / "empty").mkdir()
    code, lines, _ = run_validate(capsys, "empty")
    assert code == 1 and lines[0].startswith("empty/quest.yaml:1:1: error:")


def test_the_bundled_quests_folder_validates(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, lines, err = run_validate(capsys, "quests/")
    assert code == 0, lines
    assert sum(": ok: " in line for line in lines) == len(list((ROOT / "quests").glob("*.yaml")))
