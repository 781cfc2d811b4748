"""The scrolling story: authored text, the player's actions and the Spirit's narration.

Every text is rendered as `rich.text.Text`, never parsed as markup, so quest or
model text like "[bold]" or "[@click=app.quit]" shows literally. Narration
streams into its paragraph; the log follows the end unless the player has
scrolled up to read.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from game.engine import Para
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


class StoryParagraph(Static):
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
        return plain(PREFIX.get(self.kind, "") + self.text, STYLES.get(self.kind, ""))

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

    @property
    def following(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 1

    def _add(self, widget: StoryParagraph) -> StoryParagraph:
        follow = self.following
        self.mount(widget)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)
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
        follow = self.following
        self.narration.set_text(text)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

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
