"""game.safe_yaml: plain values with positions, every YAML mistake at file:line:col,
nothing constructed from tags, and bounded work on hostile input."""

from __future__ import annotations

import time
import textwrap

import pytest

from game import safe_yaml
from game.diagnostics import GameFileError
from game.safe_yaml import Mark, YList, YMap, load_yaml_file, load_yaml_text


def problem_of(text: str, display: str = "q.yaml"):
    """The single problem load_yaml_text reports for `text`."""
    with pytest.raises(GameFileError) as info:
        load_yaml_text(textwrap.dedent(text), display)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def file_problem(path, display=None, **kw):
    with pytest.raises(GameFileError) as info:
        load_yaml_file(path, display, **kw)
    return info.value.first


# -- plain values and positions ------------------------------------------------------

def test_values_keep_the_position_of_every_key_value_and_item():
    doc = load_yaml_text(textwrap.dedent("""\
        title: The Cellar
        scenes:
          cellar:
            words: [north, door]
            list:
              - one
              - two
        """), "q.yaml")
    assert isinstance(doc, YMap) and doc == {
        "title": "The Cellar",
        "scenes": {"cellar": {"words": ["north", "door"], "list": ["one", "two"]}}}
    assert doc.mark == Mark(1, 1)
    assert doc.key_mark("scenes") == Mark(2, 1)
    assert doc.value_mark("title") == Mark(1, 8)
    cellar = doc["scenes"]["cellar"]
    assert isinstance(cellar, YMap) and cellar.mark == Mark(4, 5)
    words = cellar["words"]
    assert isinstance(words, YList) and words.mark == Mark(4, 12)
    assert words.item_mark(0) == Mark(4, 13) and words.item_mark(1) == Mark(4, 20)
    assert cellar["list"].item_mark(1) == Mark(7, 9)
    # unknown keys and indexes fall back to the container's own position
    assert cellar.key_mark("nope") == Mark(4, 5)
    assert words.item_mark(5) == Mark(4, 12)


def test_scalars_keys_stay_words_and_dates_stay_text():
    doc = load_yaml_text("yes: no\n1: 2\nwhen: 2001-01-01\npi: 3.5\nnothing: ~\n", "q.yaml")
    assert doc == {"yes": False, "1": 2, "when": "2001-01-01", "pi": 3.5, "nothing": None}
    assert all(isinstance(k, str) for k in doc)


def test_small_aliases_are_expanded_to_plain_values():
    doc = load_yaml_text("a: &x [1, 2]\nb: *x\n", "q.yaml")
    assert doc == {"a": [1, 2], "b": [1, 2]}


def test_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes("\ufeffid: bom\n".encode("utf-8"))
    assert load_yaml_file(path) == {"id": "bom"}


# -- YAML mistakes, each with its line and column ---------------------------------------

def test_syntax_error_colon_inside_text_points_at_it_and_suggests_quotes():
    p = problem_of("""\
        id: x
        title: Note: this breaks
        """)
    assert (p.path, p.line, p.col, p.severity) == ("q.yaml", 2, 12, "error")
    assert p.message.startswith("YAML syntax error: mapping values are not allowed here")
    assert "quotes" in p.message


def test_syntax_error_missing_colon_mentions_indentation():
    p = problem_of("""\
        scenes:
          cellar:
            title: A
            description B
          hall: x
        """)
    assert (p.line, p.col) == (4, 5)
    assert "could not find expected ':'" in p.message and "indentation" in p.message


def test_unclosed_flow_list_is_a_syntax_error_at_the_end():
    p = problem_of("words: [north, door\n")
    assert p.line == 2 and p.message.startswith("YAML syntax error")
    assert "flow sequence" in p.message


def test_duplicate_key_names_both_lines():
    p = problem_of("""\
        scenes:
          cellar:
            title: One
            title: Two
        """)
    assert (p.line, p.col) == (4, 5)
    assert "duplicate key 'title'" in p.message and "first defined at line 3" in p.message


def test_every_duplicate_key_is_reported():
    with pytest.raises(GameFileError) as info:
        load_yaml_text("a: 1\nb: 2\na: 3\nb: 4\n", "q.yaml")
    assert [(p.line, p.col) for p in info.value.problems] == [(3, 1), (4, 1)]


def test_tab_in_indentation_is_named_as_a_tab():
    p = problem_of("scenes:\n  cellar:\n\ttitle: A\n")
    assert (p.line, p.col) == (3, 1)
    assert "tab" in p.message and "spaces" in p.message


def test_non_utf8_byte_points_at_the_byte(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes(b"id: x\ntitle: caf\xe9\n")
    p = file_problem(path, "q.yaml")
    assert (p.path, p.line, p.col) == ("q.yaml", 2, 11)
    assert "0xe9" in p.message and "UTF-8" in p.message


def test_non_utf8_column_counts_characters_not_bytes(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes(b"title: " + "Жук ".encode("utf-8") + b"\xff\n")
    p = file_problem(path, "q.yaml")
    assert (p.line, p.col) == (1, 12)


def test_nul_byte_means_binary(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_bytes(b"id: x\nti\x00tle: y\n")
    p = file_problem(path, "q.yaml")
    assert (p.line, p.col) == (2, 3) and "NUL" in p.message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "\ufeff\n"])
def test_empty_file_is_an_error_unless_allowed(tmp_path, text):
    path = tmp_path / "q.yaml"
    path.write_text(text)
    p = file_problem(path)
    assert (p.path, p.line, p.col) == (str(path), 1, 1) and "empty" in p.message
    assert load_yaml_file(path, empty_ok=True) is None


def test_missing_file_and_folder_are_clear_errors(tmp_path):
    assert "file not found" in file_problem(tmp_path / "nope.yaml").message
    assert "is a folder" in file_problem(tmp_path).message


def test_several_documents_are_a_syntax_error():
    p = problem_of("a: 1\n---\nb: 2\n")
    assert p.line == 2 and "YAML syntax error" in p.message


def test_merge_keys_and_complex_keys_are_refused():
    p = problem_of("base: &b {x: 1}\nscene:\n  <<: *b\n")
    assert (p.line, p.col) == (3, 3) and "merge keys" in p.message
    p = problem_of("? [a, b]\n: 1\n")
    assert (p.line, p.col) == (1, 3) and "plain word" in p.message


# -- nothing is executed or constructed ------------------------------------------------

def test_python_tags_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "q.yaml"
    path.write_text(textwrap.dedent(f"""\
        id: x
        title: !!python/object/apply:os.system ["touch {marker}"]
        author: !!python/object/apply:subprocess.call [["touch", "{marker}"]]
        summary: !!python/object/new:os.system ["touch {marker}"]
        """))
    with pytest.raises(GameFileError) as info:
        load_yaml_file(path, "q.yaml")
    assert not marker.exists()
    assert [(p.line, p.col) for p in info.value.problems] == [(2, 8), (3, 9), (4, 10)]
    assert "tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed" in info.value.first.message


@pytest.mark.parametrize("text, col", [
    ("x: !!python/name:os.system\n", 4),
    ("x: !!binary aGVsbG8=\n", 4),
    ("x: !!set {a, b}\n", 4),
    ("x: !!omap [a: 1]\n", 4),
    ("x: !custom thing\n", 4),
    ("x: [1, !!python/tuple [2]]\n", 8),
])
def test_non_plain_tags_are_refused_where_they_stand(text, col):
    p = problem_of(text)
    assert (p.line, p.col) == (1, col) and "is not allowed" in p.message


# -- hostile input: bounded work, clear errors -------------------------------------------

def _seconds(fn):
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        prev, name = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\n"  # 9**10 strings if expanded
    holder = {}

    def load():
        with pytest.raises(GameFileError) as info:
            load_yaml_text(text, "bomb.yaml")
        holder["p"] = info.value.first

    assert _seconds(load) < 5
    p = holder["p"]
    assert p.path == "bomb.yaml" and f"{safe_yaml.MAX_VALUES:,} values" in p.message
    assert "aliases" in p.message


def test_absurd_flow_nesting_is_refused_quickly_at_the_too_deep_value():
    text = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    holder = {}

    def load():
        holder["p"] = problem_of(text)

    assert _seconds(load) < 5
    p = holder["p"]
    # the root mapping is level 1, so the first list too deep is bracket number MAX_DEPTH
    assert (p.line, p.col) == (1, 3 + safe_yaml.MAX_DEPTH)
    assert "nested more than" in p.message


def test_absurd_block_nesting_is_refused_at_the_too_deep_line():
    text = "".join("  " * i + f"k{i}:\n" for i in range(500))
    p = problem_of(text)
    # a key sits one level below its mapping: key number MAX_DEPTH (on line MAX_DEPTH) is too deep
    assert (p.line, p.col) == (safe_yaml.MAX_DEPTH, 2 * (safe_yaml.MAX_DEPTH - 1) + 1)
    assert "nested more than" in p.message


def test_file_of_many_megabytes_is_refused_without_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("scenes:\n" + "  - [" + "1, " * 2_000_000 + "1]\n")  # ~6 MB
    holder = {}

    def load():
        holder["p"] = file_problem(path, "huge.yaml")

    assert _seconds(load) < 5
    p = holder["p"]
    assert (p.path, p.line, p.col) == ("huge.yaml", 1, 1) and "larger than" in p.message


def test_size_limit_is_the_callers_choice(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text("id: " + "x" * 200 + "\n")
    assert "larger than" in file_problem(path, max_bytes=100).message
    assert load_yaml_file(path, max_bytes=1000)["id"] == "x" * 200


def test_dense_file_stops_at_the_value_limit_without_reading_the_rest(monkeypatch):
    monkeypatch.setattr(safe_yaml, "MAX_VALUES", 1000)
    text = "a: [" + "1, " * 300_000 + "1]\n"  # far more values than the limit
    holder = {}

    def load():
        holder["p"] = problem_of(text)

    assert _seconds(load) < 5
    p = holder["p"]
    assert p.line == 1 and "1,000 values" in p.message
    assert p.col < 4000  # stopped near value 1000, not at the end of the line


def test_value_limit_counts_alias_expansion(monkeypatch):
    monkeypatch.setattr(safe_yaml, "MAX_VALUES", 50)
    ok = "a: &a [1, 2, 3]\nb: [*a, *a]\n"
    assert load_yaml_text(ok, "q.yaml")["b"] == [[1, 2, 3], [1, 2, 3]]
    bomb = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: [*a, *a, *a, *a, *a, *a]\n"
    assert "50 values" in problem_of(bomb).message
