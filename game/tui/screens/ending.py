"""The ending: its title and text, a summary of the game, and an offer to play again."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from game.i18n import _
from game.safe_text import inert
from game.session import Session


class EndingScreen(ModalScreen[str]):
    BINDINGS = [Binding("escape", "dismiss('read')", "Keep reading", id="close")]

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        engine = self.session.engine
        ending = engine.ending
        state = engine.state
        verdict = "You won." if ending.outcome == "win" else "You lost."
        carried = ", ".join(engine.quest.items[i].name for i in state.inventory if i in engine.quest.items)
        turns = f"{state.turn} turn" + ("" if state.turn == 1 else "s")
        summary = (f"{verdict} {turns}, {len(state.visits)} of {len(engine.quest.scenes)} "
                   f"places seen" + (f", carrying {carried}." if carried else "."))
        if engine.quest.scored:
            summary += " " + _("Score: {score} of {max_score}.").format(score=state.score,
                                                                        max_score=engine.quest.max_score)
        with Vertical(id="dialog"):
            yield Static(Text(inert(ending.title), style="bold"), classes="dialog-title")
            with VerticalScroll(id="ending-text"):  # a long ending scrolls; the buttons stay
                yield Static(Text(inert(engine.text(ending.text))))  # the variant in force, {names} filled
            yield Static(Text(summary, style="italic"), id="ending-summary")
            with Horizontal(classes="buttons"):
                yield Button("Play again", id="again", variant="primary")
                yield Button("Quest list", id="quests")
                yield Button("Keep reading", id="read")

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
