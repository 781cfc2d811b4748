"""The scrolling story: authored text, the player's actions and the Spirit's narration.

Every text is rendered as `rich.text.Text`, never parsed as markup, so quest or
model text like "[bold]" or "[@click=app.quit]" shows literally. Narration
streams into its paragraph; the log follows the end unless the player has
scrolled up to read (with the keys the game screen binds or the mouse); a new
turn brings it back to the end, and a resize keeps following if it was.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from game.engine import Para
from game.i18n import ngettext
from game.safe_text import inert

STYLES = {
    "scene-title": "bold underline",
    "scene": "",
    "text": "",
    "change": "italic",
    "info": "dim",
    "ending-title": "bold reverse",
    "ending": "bold",
    "action": "bold",
    "narration": "italic",
    "spirit-note": "dim italic",
}
PREFIX = {"change": "* ", "action": "> ", "narration": "~ "}


def plain(text: str, style: str = "") -> Text:
    """Untrusted text as a renderable that is never parsed as markup."""
    return Text(inert(text), style=style)


ACTION_SHOWN = 400  # a longer action is shown clipped (the story keeps it whole)


class StoryParagraph(Static):
    ending = False  # part of the quest's ending (a narration goes before it)
    unanswered = False  # "nothing in the quest answers that", said while the Spirit woke

    DEFAULT_CSS = """
    StoryParagraph { margin: 0 0 1 0; }
    StoryParagraph.-action { margin: 0; color: $text-accent; }
    StoryParagraph.-narration { color: $text-secondary; padding-left: 2; }
    StoryParagraph.-scene-title { margin: 1 0 0 0; }
    """

    def __init__(self, kind: str, text: str, **kwargs):
        self.kind = kind
        self.text = text
        super().__init__(self._renderable(), markup=False, classes=f"-{kind}", **kwargs)

    def _renderable(self) -> Text:
        text = self.text
        if self.kind == "action" and len(text) > ACTION_SHOWN:
            more = len(text) - ACTION_SHOWN
            text = text[:ACTION_SHOWN] + " " + ngettext("... {count} more character",
                                                        "... {count} more characters",
                                                        more).format(count=f"{more:,}")
        return plain(PREFIX.get(self.kind, "") + text, STYLES.get(self.kind, ""))

    def set_text(self, text: str) -> None:
        self.text = text
        self.update(self._renderable())


class StoryLog(VerticalScroll):
    """The story so far. `narration` is the paragraph the Spirit is writing, if any."""

    DEFAULT_CSS = """
    StoryLog { height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.narration: StoryParagraph | None = None
        self.can_focus = False
        # Following the end: set by where the player scrolled to, not by where the end is now
        # (a resize or new text moves the end; it does not mean the player scrolled up).
        self.following = True

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.following = new_value >= self.max_scroll_y - 1

    def _keep_end(self) -> None:
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False)

    def on_resize(self) -> None:
        self._keep_end()

    def follow(self) -> None:
        """Back to the end, following again (a new turn: the player sees what it did)."""
        self.following = True
        self._keep_end()

    def scroll_story(self, where: str) -> None:
        """Scroll by the keys: page_up, page_down, home or end."""
        if where == "page_up":
            self.scroll_page_up(animate=False)
        elif where == "page_down":
            self.scroll_page_down(animate=False)
        elif where == "home":
            self.scroll_home(animate=False)
        else:
            self.follow()

    def _add(self, widget: StoryParagraph) -> StoryParagraph:
        self.mount(widget)
        self._keep_end()
        return widget

    def add(self, kind: str, text: str) -> StoryParagraph:
        return self._add(StoryParagraph(kind, text))

    def add_paragraphs(self, paragraphs: list[Para]) -> None:
        for p in paragraphs:
            if p.text:
                self.add(p.kind, p.text)

    def begin_narration(self, after: StoryParagraph | None = None) -> StoryParagraph:
        """Start the Spirit's paragraph: at the end, or right after `after` (the turn it tells
        of, when the story has gone on since, e.g. a turn narrated once the Spirit woke)."""
        if after is None or not after.is_attached or after is self.children[-1]:
            self.narration = self.add("narration", "")
        else:
            self.narration = StoryParagraph("narration", "")
            self.mount(self.narration, after=after)
        return self.narration

    def stream(self, text: str) -> None:
        """Replace the narration in progress with the text so far."""
        if self.narration is None:
            self.begin_narration()
        self.narration.set_text(text)
        self._keep_end()

    def end_narration(self, text: str) -> None:
        """Show the final narration (or remove the paragraph when there is none)."""
        if self.narration is None:
            if text:
                self.add("narration", text)
            return
        if text:
            self.narration.set_text(text)
        else:
            self.narration.remove()
        self.narration = None

    def clear_story(self) -> None:
        self.narration = None
        self.remove_children()
