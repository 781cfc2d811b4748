"""The status bar: quest, scene, turn, inventory, the context gauge and the Spirit's state.

Meaning never rests on colour alone: every state is also spelled out in words.
"""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from game.i18n import _
from game.safe_text import inert


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: auto; max-height: 3; background: $panel; color: $text; padding: 0 1; }
    """

    # layout=True: a change can make the bar wrap onto another line (or need one less)
    scene: reactive[str] = reactive("", layout=True)
    turn: reactive[int] = reactive(0, layout=True)
    score: reactive[str] = reactive("", layout=True)  # "1/2" in a quest that keeps a score
    inventory: reactive[tuple] = reactive((), layout=True)
    context_used: reactive[int] = reactive(0, layout=True)
    context_window: reactive[int] = reactive(0, layout=True)
    spirit: reactive[str] = reactive("loading", layout=True)  # loading, ready, narrating, silent
    spirit_detail: reactive[str] = reactive("", layout=True)

    def render(self) -> Text:
        # Most important first: a long inventory wraps last and is what gets cut (i lists it).
        text = Text(no_wrap=False, overflow="fold")
        text.append(inert(self.scene), style="bold")
        text.append(f"  turn {self.turn}  ")
        if self.score:
            text.append(_("score {score}").format(score=self.score) + "  ")
        label = {"loading": "Spirit: waking", "ready": "Spirit: ready", "narrating": "Spirit: narrating",
                 "silent": "Spirit: silent"}.get(self.spirit, self.spirit)
        style = {"ready": "green", "narrating": "cyan", "silent": "yellow", "loading": "magenta"}.get(self.spirit, "")
        text.append(label, style=f"bold {style}")
        if self.spirit_detail:
            text.append(f" ({inert(self.spirit_detail)})", style="dim")
        if self.context_window:
            used, window = self.context_used, self.context_window
            filled = min(10, round(10 * used / window)) if window else 0
            text.append(f"  context {used}/{window} [{'#' * filled}{'.' * (10 - filled)}]")
        carrying = ", ".join(self.inventory) if self.inventory else "nothing"
        text.append(f"  carrying: {inert(carrying)}")
        return text
