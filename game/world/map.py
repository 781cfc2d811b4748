"""`storyteller map QUEST`: the quest's scene graph, as text, Mermaid or Graphviz DOT.

`render_map(quest, fmt)` draws where the story can go: every scene with its
choices and exits, where each one leads (a scene or an ending), what it needs
(its `if:` condition in words), and which scenes cannot be reached from the
start. The map is static: conditions are shown, never evaluated.

Where an option leads follows the engine's rules (`game.engine`): an `end`
effect ends the quest; otherwise the last `move` effect, else `to`, is the
scene entered. Arriving in a scene applies its `on_enter`: an `end` there or
the scene's `ending:` ends the quest (its options are then never offered),
otherwise an `on_enter` move leads on.

All quest text is untrusted: each format escapes it so no label can break the
syntax (or, for text, drive the terminal).
"""

from __future__ import annotations

from dataclasses import dataclass

from game.world.facts import flat
from game.world.model import Condition, Effect, Quest
from game.safe_text import inert

FORMATS = ("text", "mermaid", "dot")
ARRIVAL = "(on arrival)"


@dataclass(frozen=True)
class Edge:
    """One way on from a scene. kind: "scene", "ending" or "" (stays in the scene)."""

    label: str
    kind: str = ""
    target: str = ""
    needs: str = ""  # the condition in words, "" when always offered
    once: bool = False


# -- the graph -----------------------------------------------------------------------
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _destination(effects: tuple[Effect, ...], to: str | None) -> tuple[str, str]:
    end = move = None
    for e in flat(effects):
        if e.kind == "end":
            end = e.args[0]
        elif e.kind == "move":
            move = e.args[0]
    if end is not None:
        return "ending", end
    target = move or to
    return ("scene", target) if target else ("", "")


def edges(quest: Quest, scene_id: str) -> list[Edge]:
    """Where a scene leads: its arrival (ending or on_enter move), else its options."""
    scene = quest.scenes[scene_id]
    kind, target = _destination(scene.on_enter, None)
    if kind != "ending" and scene.ending:
        kind, target = "ending", scene.ending
    if kind == "ending":
        return [Edge(ARRIVAL, kind, target)]  # the quest ends here: options are never offered
    out = [Edge(ARRIVAL, kind, target)] if kind else []
    for c in scene.choices:
        kind, target = _destination(c.effects, c.to)
        label = _one_line(c.label) + (" (hidden)" if c.hidden else "")
        out.append(Edge(label, kind, target, describe(c.condition), c.once))
    return out + _typed_edges(quest, scene)


def _typed_edges(quest: Quest, scene) -> list[Edge]:
    """Responses and things' verbs (the scene's, then the quest's) that move or end the quest."""
    answered = [(_response_label(r), r) for r in list(scene.responses) + list(quest.responses)]
    things = list(scene.things.values()) + list(quest.items.values())
    answered += [(f"{verb} {thing.name}", a) for thing in things for verb, found in thing.verbs.items()
                 for a in found]
    out = []
    for label, answer in answered:
        for effect in flat(answer.effects):
            if effect.kind in ("end", "move"):
                kind = "ending" if effect.kind == "end" else "scene"
                out.append(Edge(f"typed: {_one_line(label)}", kind, effect.args[0], describe(answer.condition)))
    return out


def _response_label(r) -> str:
    if r.anything:
        return "anything else"
    return " / ".join(list(r.words[:2]) + list(r.verbs[:2]))


def reachable(quest: Quest) -> tuple[set[str], set[str]]:
    """Scene ids and ending ids reachable from the start (conditions not evaluated)."""
    if quest.start not in quest.scenes:
        return set(), set()
    scenes, endings, todo = {quest.start}, set(), [quest.start]
    while todo:
        for e in edges(quest, todo.pop()):
            if e.kind == "ending":
                endings.add(e.target)
            elif e.kind == "scene" and e.target not in scenes and e.target in quest.scenes:
                scenes.add(e.target)
                todo.append(e.target)
    return scenes, endings


# condition kind -> (words before the ids, word between them); negatives repeat the word
_ID_WORDS = {"has": ("has ", " and "), "lacks": ("lacks ", " and "), "flag": ("flag ", " and "),
             "not_flag": ("not flag ", " and not flag "), "visited": ("visited ", " and "),
             "not_visited": ("not visited ", " and not visited "), "in": ("in ", " or ")}
_COMPARE = {"flags": "=", "at_least": "≥", "at_most": "≤"}


def describe(cond: Condition | None) -> str:
    """A condition in words: 'has lantern and flag gate_open'."""
    if cond is None:
        return ""
    kind, args = cond.kind, cond.args
    if kind in ("all", "any"):
        return f" {'and' if kind == 'all' else 'or'} ".join(_part(c) for c in args)
    if kind == "not":
        return "not " + (_part(args[0]) if args else "()")
    if kind in _ID_WORDS:
        before, between = _ID_WORDS[kind]
        return before + between.join(map(str, args))
    if kind in _COMPARE:
        return " and ".join(f"{flag} {_COMPARE[kind]} {_value(v)}" for flag, v in args)
    if kind in ("turn_at_least", "turn_at_most"):
        return f"turn {'≥' if kind == 'turn_at_least' else '≤'} {args[0]}"
    return kind


def _part(cond: Condition) -> str:
    text = describe(cond)
    return f"({text})" if cond.kind in ("all", "any") and len(cond.args) > 1 else text


def _value(v) -> str:
    return str(v).lower() if isinstance(v, bool) else f'"{v}"' if isinstance(v, str) else str(v)


def _edge_text(e: Edge) -> str:
    """The label with its marks: 'Open the door [needs: has key] (once)'."""
    return _one_line(e.label + (f" [needs: {e.needs}]" if e.needs else "") + (" (once)" if e.once else ""))


# -- rendering -----------------------------------------------------------------------
def render_map(quest: Quest, fmt: str = "text") -> str:
    """The quest's scene graph in `fmt`: "text" (a tree for the terminal), "mermaid" or "dot"."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown map format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    return {"text": _text, "mermaid": _mermaid, "dot": _dot}[fmt](quest)


def _ending_mark(quest: Quest, ending_id: str) -> str:
    ending = quest.endings.get(ending_id)
    if ending is None:
        return f"? ENDING {ending_id} (not defined)"
    mark = "★" if ending.outcome == "win" else "✗"
    return f"{mark} ENDING {ending.outcome}: {_one_line(ending.title)} [{ending_id}]"


def _scene_name(quest: Quest, scene_id: str) -> str:
    scene = quest.scenes.get(scene_id)
    return f"{_one_line(scene.title)} [{scene_id}]" if scene else f"? {scene_id} (not defined)"


def _text(quest: Quest) -> str:
    scenes, endings = reachable(quest)
    lines = [f"Map of {_one_line(quest.title)} [{quest.id}]", f"Start: {_scene_name(quest, quest.start)}", "",
             _scene_name(quest, quest.start)]
    shown = {quest.start}
    # Depth first with an explicit stack: a long chain of scenes must not hit Python's limit.
    frames = [(edges(quest, quest.start) if quest.start in quest.scenes else [], "")]
    while frames:
        todo, prefix = frames[-1]
        if not todo:
            frames.pop()
            continue
        e = todo.pop(0)
        branch, inner = ("└── ", prefix + "    ") if not todo else ("├── ", prefix + "│   ")
        line = f"{prefix}{branch}{_edge_text(e)}"
        if e.kind == "ending":
            line += f" → {_ending_mark(quest, e.target)}"
        elif e.kind == "scene":
            line += f" → {_scene_name(quest, e.target)}"
            if e.target in shown:
                line += " (see above)"
            elif e.target in quest.scenes:
                shown.add(e.target)
                frames.append((edges(quest, e.target), inner))
        lines.append(line)
    lost = [s for s in quest.scenes if s not in scenes]
    lines += ["", "Unreachable scenes:" + ("" if lost else " none")]
    lines += [f"  - {_scene_name(quest, s)}" for s in lost]
    unused = [x for x in quest.endings if x not in endings]
    if unused:
        lines += ["", "Endings never reached:"] + [f"  - {_ending_mark(quest, x)}" for x in unused]
    return inert("\n".join(lines) + "\n")


def _node_ids(quest: Quest) -> dict[tuple[str, str], str]:
    """Safe node ids by position (s0, s1 ..., e0 ...): quest ids may clash with keywords."""
    ids = {("scene", s): f"s{i}" for i, s in enumerate(quest.scenes)}
    ids.update({("ending", x): f"e{i}" for i, x in enumerate(quest.endings)})
    return ids


def _all_edges(quest: Quest, ids) -> list[tuple[str, str, Edge]]:
    out = []
    for s in quest.scenes:
        for e in edges(quest, s):
            if (e.kind, e.target) in ids:
                out.append((ids[("scene", s)], ids[(e.kind, e.target)], e))
    return out


_MERMAID_SAFE = set(" .,:!?'()-_/+*=≥≤★✗")


def _mermaid_text(text: str) -> str:
    """Text for inside a Mermaid "quoted" label: everything odd as an entity code (#34;)."""
    return "".join(c if c.isalnum() or c in _MERMAID_SAFE else f"#{ord(c)};" for c in _one_line(text))


def _mermaid(quest: Quest) -> str:
    scenes, endings = reachable(quest)
    ids = _node_ids(quest)
    q = _mermaid_text
    lines = ["flowchart TD"]
    for s, scene in quest.scenes.items():
        lines.append(f'    {ids[("scene", s)]}["{q(scene.title)}<br/>{q(s)}"]')
    for x, ending in quest.endings.items():
        mark = "★" if ending.outcome == "win" else "✗"
        lines.append(f'    {ids[("ending", x)]}(["{mark} {q(ending.outcome)}: {q(ending.title)}<br/>{q(x)}"])')
    for a, b, e in _all_edges(quest, ids):
        arrow = "-.->" if e.needs else "-->"
        lines.append(f'    {a} {arrow}|"{q(_edge_text(e))}"| {b}')
    lines += ["    classDef start stroke-width:4px",
              "    classDef win fill:#d4f7d4,stroke:#2e8b57,stroke-width:2px",
              "    classDef lose fill:#f9d6d5,stroke:#b22222,stroke-width:2px",
              "    classDef unreachable fill:#eeeeee,stroke:#999999,stroke-dasharray:5 5,color:#777777"]
    groups = {"start": [ids[("scene", quest.start)]] if quest.start in quest.scenes else [],
              "win": [ids[("ending", x)] for x, n in quest.endings.items() if n.outcome == "win"],
              "lose": [ids[("ending", x)] for x, n in quest.endings.items() if n.outcome != "win"],
              "unreachable": [ids[("scene", s)] for s in quest.scenes if s not in scenes]
              + [ids[("ending", x)] for x in quest.endings if x not in endings]}
    lines += [f"    class {','.join(members)} {name}" for name, members in groups.items() if members]
    return "\n".join(lines) + "\n"


def _dot_text(text: str) -> str:
    """Text for inside a DOT "quoted" string: backslashes and quotes escaped, no controls."""
    text = "".join(c for c in _one_line(text) if c.isprintable())
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot(quest: Quest) -> str:
    scenes, endings = reachable(quest)
    ids = _node_ids(quest)
    d = _dot_text
    lines = ["digraph quest {", f'    label="{d(quest.title)}";', "    labelloc=t;",
             '    node [shape=box, style="rounded", fontname="sans-serif"];',
             '    edge [fontname="sans-serif", fontsize=10];',
             '    start [shape=point, width=0.15, label=""];']
    for s, scene in quest.scenes.items():
        style = "rounded,dashed" if s not in scenes else "rounded"
        color = ', color="gray50", fontcolor="gray40"' if s not in scenes else ""
        lines.append(f'    {ids[("scene", s)]} [label="{d(scene.title)}\\n[{d(s)}]", style="{style}"{color}];')
    for x, ending in quest.endings.items():
        win = ending.outcome == "win"
        shape, fill = ("doublecircle", "palegreen") if win else ("doubleoctagon", "lightpink")
        style = "filled,dashed" if x not in endings else "filled"
        lines.append(f'    {ids[("ending", x)]} [label="{"WIN" if win else "LOSE"}: {d(ending.title)}\\n[{d(x)}]", '
                     f'shape={shape}, style="{style}", fillcolor="{fill}"];')
    if quest.start in quest.scenes:
        lines.append(f'    start -> {ids[("scene", quest.start)]};')
    for a, b, e in _all_edges(quest, ids):
        style = ", style=dashed" if e.needs else ""
        lines.append(f'    {a} -> {b} [label="{d(_edge_text(e))}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"
