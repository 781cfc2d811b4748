"""The context inspector: exactly what the Spirit saw last turn, segment by segment."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from game.i18n import N_, _
from game.safe_text import inert


STATUSES = (N_("included"), N_("trimmed"), N_("clipped"))  # a segment's status, as shown


class ContextInspector(ModalScreen):
    """Tab moves between the table and the prompt; PageUp/PageDown scroll the one in focus,
    and ctrl+PageUp/ctrl+PageDown scroll the prompt from either."""

    BINDINGS = [Binding("escape,f2", "dismiss", N_("Close"), id="close"),
                Binding("ctrl+pageup", "prompt_page(-1)", N_("Scroll the prompt up"), id="prompt-up",
                        show=False, priority=True),
                Binding("ctrl+pagedown", "prompt_page(1)", N_("Scroll the prompt down"), id="prompt-down",
                        show=False, priority=True)]

    def __init__(self, prompt, about: str | None = None):
        super().__init__()
        self.prompt = prompt  # game.context.BuiltPrompt or None
        self.about = about  # one line on the narrator (a server's API style, window and counts)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text(_("What the Spirit saw last turn"), style="bold"), classes="dialog-title")
            app = self.app
            if app.spirit_status == "silent":
                yield Static(Text(_("The Storyteller Spirit is silent: {reason}.").format(
                    reason=inert(_(app.spirit_reason))), style="yellow"), id="inspector-silent")
            if self.about:
                yield Static(Text(inert(self.about)), id="narrator-about")
            if self.prompt is None:
                yield Static(Text(_("Nothing yet: the Spirit has not narrated a turn. (Esc closes)")))
                return
            p = self.prompt
            trimmed = p.with_status("trimmed")
            clipped = p.with_status("clipped")
            yield Static(Text(_(
                "Prompt {prompt} tokens + {reply} for the reply = {total} of the {window}-token window. "
                "{trimmed} segment(s) trimmed, {clipped} clipped.").format(
                prompt=p.prompt_tokens, reply=p.max_new_tokens, total=p.prompt_tokens + p.max_new_tokens,
                window=p.window, trimmed=len(trimmed), clipped=len(clipped))))
            yield Static(Text(_("Tab: table or prompt. PageUp/PageDown scroll the one in focus; "
                                "ctrl+PageUp/ctrl+PageDown the prompt. Esc closes."), style="dim"),
                         id="inspector-keys")
            table = DataTable(id="segments", cursor_type="row", zebra_stripes=True)
            # the long labels last, so a narrow terminal cuts only them
            table.add_columns(_("segment"), _("tokens"), _("status"), _("what"))
            for s in p.segments:
                tokens = (f"{s.tokens}/{s.full_tokens}" if s.status == "clipped"
                          else str(s.full_tokens if s.status == "trimmed" else s.tokens))
                table.add_row(s.kind, tokens, _(s.status), Text(inert(s.label)))
            yield table
            with VerticalScroll(id="prompt-text"):
                yield Static(Text(inert(p.text)))

    def on_mount(self) -> None:
        tables = self.query("#segments")
        if tables:
            tables.first().focus()

    def action_prompt_page(self, step: int) -> None:
        scroll = self.query("#prompt-text")
        if scroll:
            scroll.first().scroll_page_down(animate=False) if step > 0 else \
                scroll.first().scroll_page_up(animate=False)
