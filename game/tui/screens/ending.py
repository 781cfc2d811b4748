"""The ending: its title and text, a summary of the game, and an offer to play again."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from game.i18n import N_, _, ngettext
from game.safe_text import inert, inert_line
from game.session import Session


class EndingScreen(ModalScreen[str]):
    BINDINGS = [Binding("escape", "dismiss('read')", N_("Keep reading"), id="close")]

    def __init__(self, session: Session):
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        engine = self.session.engine
        ending = engine.ending
        state = engine.state
        verdict = engine.say("won" if ending.outcome == "win" else "lost_game")
        carried = ", ".join(inert_line(engine.quest.items[i].name) for i in state.inventory if i in engine.quest.items)
        turns = ngettext("{n} turn", "{n} turns", state.turn).format(n=state.turn)
        places = ngettext("{seen} of {count} place seen", "{seen} of {count} places seen",
                          len(engine.quest.scenes)).format(seen=len(state.visits), count=len(engine.quest.scenes))
        summary = f"{verdict} {turns}, {places}" + (
            _(", carrying {things}.").format(things=carried) if carried else ".")
        if engine.quest.scored:
            summary += " " + _("Score: {score} of {max_score}.").format(score=state.score,
                                                                        max_score=engine.quest.max_score)
        with Vertical(id="dialog"):
            yield Static(Text(inert(ending.title), style="bold"), classes="dialog-title")
            with VerticalScroll(id="ending-text"):  # a long ending scrolls; the buttons stay
                yield Static(Text(inert(engine.text(ending.text))))  # the variant in force, {names} filled
            yield Static(Text(summary, style="italic"), id="ending-summary")
            yield Static(Text(_("Tab moves between the buttons; Esc keeps reading."), style="dim"))
            with Horizontal(classes="buttons"):
                yield Button(_("Play again"), id="again", variant="primary")
                yield Button(_("Quest list"), id="quests")
                yield Button(_("Keep reading"), id="read")

    def on_mount(self) -> None:
        self.query_one("#again", Button).focus()  # Enter plays again

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)
