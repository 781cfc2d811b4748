"""The context inspector: exactly what the Spirit saw last turn, segment by segment."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from game.safe_text import inert


class ContextInspector(ModalScreen):
    BINDINGS = [Binding("escape,f2", "dismiss", "Close", id="close")]

    def __init__(self, prompt, about: str | None = None):
        super().__init__()
        self.prompt = prompt  # game.context.BuiltPrompt or None
        self.about = about  # one line on the narrator (a server's API style, window and counts)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text("What the Spirit saw last turn", style="bold"), classes="dialog-title")
            if self.about:
                yield Static(Text(inert(self.about)), id="narrator-about")
            if self.prompt is None:
                yield Static("Nothing yet: the Spirit has not narrated a turn. (Esc closes)")
                return
            p = self.prompt
            trimmed = p.with_status("trimmed")
            clipped = p.with_status("clipped")
            yield Static(Text(
                f"Prompt {p.prompt_tokens} tokens + {p.max_new_tokens} for the reply = "
                f"{p.prompt_tokens + p.max_new_tokens} of the {p.window}-token window. "
                f"{len(trimmed)} segment(s) trimmed, {len(clipped)} clipped."))
            table = DataTable(id="segments", cursor_type="row", zebra_stripes=True)
            # the long labels last, so a narrow terminal cuts only them
            table.add_columns("segment", "tokens", "status", "what")
            for s in p.segments:
                tokens = (f"{s.tokens}/{s.full_tokens}" if s.status == "clipped"
                          else str(s.full_tokens if s.status == "trimmed" else s.tokens))
                table.add_row(s.kind, tokens, s.status, Text(inert(s.label)))
            yield table
            with VerticalScroll(id="prompt-text"):
                yield Static(Text(inert(p.text)))
