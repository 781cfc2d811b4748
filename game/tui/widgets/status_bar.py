"""The status bar: scene, turn, the Spirit's state, the context gauge and what is carried.

One line at every width: the most important parts stay and the rest give way in a
fixed order: the context gauge (shortened, then left out), the Spirit's detail (but
"carrying: nothing" goes before it), the carried things (then shown as a count), and
last the scene's title is shortened. `i` lists what is carried;
F1 says why the Spirit is silent. Meaning never rests on colour alone: every state
is also spelled out in words.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from game.i18n import N_, _, ngettext
from game.safe_text import inert

SPIRIT_WORDS = {"loading": N_("Spirit: waking"), "ready": N_("Spirit: ready"),
                "narrating": N_("Spirit: narrating"), "silent": N_("Spirit: silent")}
SPIRIT_STYLES = {"ready": "green", "narrating": "cyan", "silent": "yellow", "loading": "magenta"}


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text; padding: 0 1; }
    """

    scene: reactive[str] = reactive("")
    turn: reactive[int] = reactive(0)
    score: reactive[str] = reactive("")  # "1/2" in a quest that keeps a score
    inventory: reactive[tuple] = reactive(())
    context_used: reactive[int] = reactive(0)
    context_window: reactive[int] = reactive(0)
    spirit: reactive[str] = reactive("loading")  # loading, ready, narrating, silent
    spirit_detail: reactive[str] = reactive("")

    def on_resize(self) -> None:
        self.refresh()

    def parts(self, gauge: str | None, items: bool, detail: bool, scene_room: int | None) -> list[tuple[str, str]]:
        """(text, style) pieces for one way of filling the bar."""
        scene = inert(self.scene)
        if scene_room is not None and len(scene) > scene_room:
            scene = scene[:max(scene_room - 1, 1)] + "…"
        out = [(scene, "bold"), ("  " + _("turn {n}").format(n=self.turn), "")]
        if self.score:
            out.append(("  " + _("score {score}").format(score=self.score), ""))
        out.append(("  " + _(SPIRIT_WORDS.get(self.spirit, self.spirit)),
                    f"bold {SPIRIT_STYLES.get(self.spirit, '')}"))
        if detail and self.spirit_detail:
            out.append((f" ({inert(self.spirit_detail)})", "dim"))
        if gauge and self.context_window:
            used, window = self.context_used, self.context_window
            filled = min(10, round(10 * used / window)) if window else 0
            if gauge == "short":  # the share of the window only: F2 has the rest
                out.append((f"  {_('context')} {min(100, round(100 * used / window))}%", ""))
            else:
                out.append((f"  {_('context')} {used}/{window} [{'#' * filled}{'.' * (10 - filled)}]", ""))
        if items:
            carrying = ", ".join(inert(i) for i in self.inventory) if self.inventory else _("nothing")
            out.append(("  " + _("carrying: {things}").format(things=carrying), ""))
        elif self.inventory:
            count = len(self.inventory)
            out.append(("  " + ngettext("carrying {n} thing (i)", "carrying {n} things (i)", count)
                        .format(n=count), ""))
        return out

    def render(self) -> Text:
        width = max(self.content_size.width, 1)
        choices = [("full", True, True), ("short", True, True), (None, True, True)]
        if self.inventory:  # what is carried before the Spirit's detail ("carrying: nothing" after it)
            choices += [("short", True, False), (None, True, False), (None, False, True)]
        else:
            choices += [(None, False, True), (None, True, False)]
        choices.append((None, False, False))
        chosen = None
        for gauge, items, detail in choices:
            chosen = self.parts(gauge, items, detail, None)
            if sum(len(t) for t, _s in chosen) <= width:
                break
        else:
            rest = sum(len(t) for t, _s in chosen[1:])
            chosen = self.parts(None, False, False, max(width - rest, 8))
        text = Text(no_wrap=True, overflow="ellipsis")
        for piece, style in chosen:
            text.append(piece, style=style)
        return text
