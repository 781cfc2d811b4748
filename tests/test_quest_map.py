"""`storyteller map`: the scene graph as a text tree, Mermaid and DOT, with hostile labels kept inert."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap

import pytest

from game.locations import PROJECT_ROOT
from game.world.model import Choice, Condition, Effect, Ending, Quest, Scene
from game.world.loader import load_quest
from game.world.map import describe, reachable, render_map
from tests.helpers import load_quest_text

BUNDLED = PROJECT_ROOT / "quests" / "call-of-the-storyteller.yaml"

# Hostile text for labels and titles: every character that means something in Mermaid or DOT.
NASTY = 'Say "hi"] --> x{y} |z| <b>#1;</b> back\\slash\\n `tick` %% end; A[B]'

MAZE = textwrap.dedent("""\
    id: maze
    title: 'The "Maze" ]'
    start: hall
    flags: {lit: false, mood: calm}
    items:
      key: {name: a key}
    scenes:
      hall:
        title: The Hall
        description: A hall.
        choices:
          - label: 'Pull the "odd" lever ] |x|'
            effects: [{set: lit}]
          - label: Take the key
            effects: [{give: key}]
        exits:
          - label: Open the cellar door
            to: cellar
            if: {has: key, not: {flag: lit}}
            locked: Locked.
          - label: Jump down the chute
            to: hall
            effects: [{move: chute}]
          - label: Give up
            to: cellar
            effects: [{end: gave-up}]
      chute:
        title: The Chute
        description: Sliding.
        on_enter: [{move: vault}]
      vault:
        title: The Vault
        description: Gold.
        exits:
          - label: Leave in triumph
            to: exit
            if: {any: [{flags: {mood: calm}}, {at_least: {score: 2}}]}
      cellar:
        title: The Cellar
        description: Cold.
        exits:
          - label: Back up
            to: hall
      exit:
        title: The Way Out
        description: Daylight.
        ending: escaped
      trap:
        title: The Trap Room
        description: Nobody gets here.
        on_enter: [{end: trapped}]
        exits:
          - label: To the attic
            to: attic
      attic:
        title: The Attic
        description: Only the trap room leads here, and it ends on arrival.
        exits:
          - label: Down
            to: trap
    endings:
      escaped: {title: Free at Last, text: You are out., outcome: win}
      gave-up: {title: 'Quit "early"', text: You stop., outcome: lose}
      trapped: {title: Trapped, text: Caught., outcome: lose}
      forgotten: {title: Never Used, text: Nothing leads here.}
    """).replace("flags: {lit: false, mood: calm}", "flags: {lit: false, mood: calm, score: 0}")


@pytest.fixture
def maze(tmp_path) -> Quest:
    return load_quest_text(tmp_path, "maze.yaml", MAZE)


def hostile_quest(text: str = NASTY) -> Quest:
    """A quest built directly, so labels can hold anything (control characters included)."""
    scenes = {
        "end": Scene("end", f"Start {text}", ("d",), choices=(
            Choice(f"Go {text}", to="graph", condition=Condition("flags", (("mood", text),)), is_exit=True),
            Choice(f"Finish {text}", effects=(Effect("end", ("subgraph",)),)),
        )),
        "graph": Scene("graph", f"Room {text}", ("d",), choices=(Choice("Back", to="end", is_exit=True),)),
        "node": Scene("node", f"Lost {text}", ("d",)),
    }
    endings = {"subgraph": Ending("subgraph", f"Won {text}", "t", "win"),
               "strict": Ending("strict", f"Lost {text}", "t", "lose")}
    return Quest(id="hostile", title=f"Title {text}", start="end", scenes=scenes, endings=endings,
                 flags={"mood": ""})


# -- reachability ------------------------------------------------------------------
def test_reachability_follows_the_engine(maze):
    scenes, endings = reachable(maze)
    # chute via a move effect, vault via chute's on_enter move, exit ends on arrival
    assert scenes == {"hall", "cellar", "chute", "vault", "exit"}
    # trap and attic are unreachable: only the trap room leads to the attic, and it ends on arrival
    assert endings == {"escaped", "gave-up"}


def test_bundled_quest_is_fully_reachable():
    quest = load_quest(BUNDLED)
    scenes, endings = reachable(quest)
    assert scenes == set(quest.scenes) and endings == set(quest.endings)


def test_describe_conditions_in_words():
    cond = Condition("all", (Condition("has", ("lantern", "key")), Condition("not", (Condition("flag", ("lit",)),)),
                             Condition("any", (Condition("at_least", (("score", 2),)),
                                               Condition("flags", (("mood", "calm"),)))),
                             Condition("not_visited", ("crypt", "tomb")), Condition("turn_at_most", (9,))))
    assert describe(cond) == ('has lantern and key and not flag lit and (score ≥ 2 or mood = "calm") '
                              "and not visited crypt and not visited tomb and turn ≤ 9")
    assert describe(None) == ""


# -- text --------------------------------------------------------------------------
def test_text_map(maze):
    text = render_map(maze)
    tree, _, rest = text.partition("Unreachable scenes:")
    for scene_id in ("hall", "cellar", "chute", "vault", "exit"):
        title = maze.scenes[scene_id].title
        assert f"{title} [{scene_id}]" in tree
    assert "★ ENDING win: Free at Last [escaped]" in tree
    assert '✗ ENDING lose: Quit "early" [gave-up]' in tree
    assert "Open the cellar door [needs: has key and not flag lit] → The Cellar [cellar]" in tree
    assert "Jump down the chute → The Chute [chute]" in tree
    assert "(on arrival) → The Vault [vault]" in tree
    assert "Back up → The Hall [hall] (see above)" in tree
    assert "Trap Room" not in tree and "Attic" not in tree
    assert "The Trap Room [trap]" in rest and "The Attic [attic]" in rest
    assert "Never Used" in rest  # endings nothing leads to are listed too
    # every scene is expanded once: its options appear exactly once
    assert tree.count("Take the key") == 1 and tree.count("Leave in triumph") == 1


def test_text_map_of_the_bundled_quest():
    quest = load_quest(BUNDLED)
    text = render_map(quest, "text")
    for scene_id, scene in quest.scenes.items():
        assert f"[{scene_id}]" in text and scene.title in text
    assert "Unreachable scenes: none" in text
    assert "★ ENDING win" in text and "✗ ENDING lose" in text
    assert "[needs: has lantern]" in text


def test_text_map_is_inert():
    quest = hostile_quest("bad \x1b]0;pwned\x07 \x1b[31mred\n\nnext line")
    text = render_map(quest)
    assert "\x1b" not in text and "\x07" not in text
    assert all(line.startswith(("Map of", "Start:", "Start ", "├", "└", "│", " ", "Unreachable", "Endings", "  -"))
               for line in text.splitlines() if line)


def test_long_chain_does_not_recurse_out():
    n = 1500
    scenes = {f"s{i}": Scene(f"s{i}", f"Room {i}", ("d",),
                             choices=(Choice("on", to=f"s{i + 1}", is_exit=True),) if i < n - 1 else ())
              for i in range(n)}
    scenes[f"s{n - 1}"] = Scene(f"s{n - 1}", "Last", ("d",), ending="done")
    quest = Quest(id="long", title="Long", start="s0", scenes=scenes,
                  endings={"done": Ending("done", "Done", "t")})
    assert "★ ENDING win: Done" in render_map(quest)
    assert "class s0 start" in render_map(quest, "mermaid")


def test_unknown_format_is_refused(maze):
    with pytest.raises(ValueError, match="text, mermaid, dot"):
        render_map(maze, "svg")


# -- Mermaid -----------------------------------------------------------------------
MERMAID_NODE = re.compile(r'^    (\w+)(\["|\(\[")([^"]*)("\]|"\]\))$')
MERMAID_EDGE = re.compile(r'^    (\w+) (-->|-\.->)\|"([^"]*)"\| (\w+)$')
MERMAID_CLASS = re.compile(r"^    class ([\w,]+) (\w+)$")


def parse_mermaid(text: str):
    """Check every line against the few forms we emit; return nodes, edges and classes."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes, edges, classes, defs = {}, [], {}, set()
    for line in lines[1:]:
        if m := MERMAID_NODE.match(line):
            assert {m[2], m[4]} in ({'["', '"]'}, {'(["', '"])'}), line
            nodes[m[1]] = m[3]
        elif m := MERMAID_EDGE.match(line):
            edges.append((m[1], m[3], m[4], m[2]))
        elif m := MERMAID_CLASS.match(line):
            for node in m[1].split(","):
                classes.setdefault(m[2], set()).add(node)
        elif line.startswith("    classDef "):
            defs.add(line.split()[1])
        else:
            raise AssertionError(f"unexpected Mermaid line: {line!r}")
    for src, label, dst, _ in edges:
        assert src in nodes and dst in nodes, (src, dst)
    assert set(classes) <= defs
    for node_set in classes.values():
        assert node_set <= set(nodes)
    for label in list(nodes.values()) + [e[1] for e in edges]:
        bare = label.replace("<br/>", "")
        assert not re.search(r'["\[\]{}|<>`;]', re.sub(r"#\d+;", "", bare)), label
    return nodes, edges, classes


def mermaid_unescape(label: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m[1])), label)


def test_mermaid_map(maze):
    nodes, edges, classes = parse_mermaid(render_map(maze, "mermaid"))
    by_label = {mermaid_unescape(v).split("<br/>")[-1]: k for k, v in nodes.items()}
    assert set(by_label) == set(maze.scenes) | set(maze.endings)
    assert classes["unreachable"] == {by_label[x] for x in ("trap", "attic", "trapped", "forgotten")}
    assert classes["win"] == {by_label["escaped"], by_label["forgotten"]}
    assert classes["lose"] == {by_label["gave-up"], by_label["trapped"]}
    assert classes["start"] == {by_label["hall"]}
    labels = {mermaid_unescape(label): (src, dst, arrow) for src, label, dst, arrow in edges}
    assert labels["Open the cellar door [needs: has key and not flag lit]"] == (
        by_label["hall"], by_label["cellar"], "-.->")
    assert labels["Give up"] == (by_label["hall"], by_label["gave-up"], "-->")
    assert "Pull the \"odd\" lever ] |x|" not in labels  # it leads nowhere: no edge
    assert 'Quit "early"' in mermaid_unescape(nodes[by_label["gave-up"]])


def test_mermaid_escapes_hostile_text():
    quest = hostile_quest()
    nodes, edges, _ = parse_mermaid(render_map(quest, "mermaid"))
    # quest ids like "end", "graph" or "subgraph" never become Mermaid node ids
    assert not set(nodes) & {"end", "graph", "node", "subgraph", "strict"}
    assert any(mermaid_unescape(v).startswith(f"Start {NASTY}<br/>") for v in nodes.values())
    assert f'Go {NASTY} [needs: mood = "{NASTY}"]' in {mermaid_unescape(e[1]) for e in edges}


# -- DOT ---------------------------------------------------------------------------
def dot_tokens(text: str) -> list[str]:
    """Split DOT into tokens: quoted strings (unescaped, prefixed with '"'), words and symbols."""
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c == '"':
            j, out = i + 1, []
            while text[j] != '"':
                assert text[j] != "\n", "newline inside a DOT string"
                if text[j] == "\\":
                    out.append(text[j + 1] if text[j + 1] in '"\\' else "\\" + text[j + 1])
                    j += 2
                else:
                    out.append(text[j])
                    j += 1
            tokens.append('"' + "".join(out))
            i = j + 1
        elif c == "-" and text[i:i + 2] == "->":
            tokens.append("->")
            i += 2
        elif c.isalnum() or c in "_.":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "_."):
                j += 1
            tokens.append(text[i:j])
            i = j
        else:
            assert c in "{}[];,=", f"unexpected character {c!r} outside a DOT string"
            tokens.append(c)
            i += 1
    return tokens


def parse_dot(text: str):
    """Check brace/bracket balance outside strings; return node attributes and edges."""
    tokens = dot_tokens(text)
    assert tokens[:3] == ["digraph", "quest", "{"] and tokens[-1] == "}"
    depth = {"{": 0, "[": 0}
    for t in tokens:
        if t in "{[" and len(t) == 1:
            depth[t] += 1
        elif t in ("}", "]"):
            depth["{" if t == "}" else "["] -= 1
            assert min(depth.values()) >= 0
    assert depth == {"{": 0, "[": 0}
    statements, current = [], []
    for t in tokens[3:-1]:
        if t == ";":
            statements.append(current)
            current = []
        else:
            current.append(t)
    assert current == []
    nodes, edges = {}, []
    for st in statements:
        attrs = {}
        if "[" in st:
            assert st[-1] == "]"
            body = st[st.index("[") + 1:-1]
            for i in range(0, len(body), 4):  # key = value [,]
                key, eq, value = body[i:i + 3]
                assert eq == "=" and body[i + 3:i + 4] in ([], [","]), body
                attrs[key] = value.removeprefix('"')
            st = st[:st.index("[")]
        if "->" in st:
            assert len(st) == 3 and st[1] == "->"
            edges.append((st[0], st[2], attrs))
        elif st[0] not in ("node", "edge", "graph") and "=" not in st:
            assert len(st) == 1
            nodes[st[0]] = attrs
    for src, dst, _ in edges:
        assert src in nodes and dst in nodes, (src, dst)
    return nodes, edges


def test_dot_map(maze):
    nodes, edges = parse_dot(render_map(maze, "dot"))
    by_id = {a["label"].rsplit("\\n[", 1)[-1].rstrip("]"): k for k, a in nodes.items() if "label" in a and k != "start"}
    assert set(by_id) == set(maze.scenes) | set(maze.endings)
    for x in ("trap", "attic", "trapped", "forgotten"):
        assert "dashed" in nodes[by_id[x]]["style"]
    for x in ("hall", "exit", "escaped", "gave-up"):
        assert "dashed" not in nodes[by_id[x]]["style"]
    assert nodes[by_id["escaped"]]["shape"] == "doublecircle"
    assert nodes[by_id["gave-up"]]["shape"] == "doubleoctagon"
    assert ("start", by_id["hall"], {}) in edges
    locked = [a for s, d, a in edges if (s, d) == (by_id["hall"], by_id["cellar"])][0]
    assert locked["label"] == "Open the cellar door [needs: has key and not flag lit]"
    assert locked["style"] == "dashed"
    assert nodes[by_id["gave-up"]]["label"].startswith('LOSE: Quit "early"')


def test_dot_escapes_hostile_text():
    quest = hostile_quest()
    nodes, edges = parse_dot(render_map(quest, "dot"))
    assert any(a.get("label") == f"Start {NASTY}\\n[end]" for a in nodes.values())
    assert f'Go {NASTY} [needs: mood = "{NASTY}"]' in {a.get("label") for _, _, a in edges}


def test_dot_drops_control_characters():
    text = render_map(hostile_quest("a\x00b\x1b[0mc\nd"), "dot")
    assert "\x00" not in text and "\x1b" not in text
    parse_dot(text)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_accepts_the_dot(maze):
    for quest in (maze, hostile_quest(), load_quest(BUNDLED)):
        result = subprocess.run(["dot", "-Tsvg"], input=render_map(quest, "dot"), capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr
        assert "<svg" in result.stdout


def test_hidden_options_and_typed_answers_that_end_the_quest_are_on_the_map():
    from tests.conftest import QUESTS

    quest = load_quest(QUESTS / "cloak-of-darkness.yaml")
    scenes, endings = reachable(quest)
    assert scenes == {"foyer", "cloakroom", "bar"} and endings == {"won", "lost"}
    text = render_map(quest)
    assert "typed: read a message in the sawdust [needs: disturbed ≤ 1] → ★ ENDING win" in text
    assert "Endings never reached" not in text
