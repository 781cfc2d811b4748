"""Bracketed pastes that contain escape sequences, made whole before Textual parses them.

Textual's input parser treats an ESC inside a bracketed paste as the start of a key
sequence: the text after it arrives as key presses ahead of the paste (a paste of
"first ESC[1mbold" shows as "^[1mboldfirst"). `PasteCleaner` sits in front of the
parser: it holds a paste until its end marker and hands it on with every control
sequence removed (`game.safe_text.strip_controls`), so the parser sees one clean
paste in the order it was typed. Everything outside a paste passes through at once.
`driver_class()` is the terminal driver that uses it (Linux/macOS terminals; other
drivers are used as they are).
"""

from __future__ import annotations

from game.safe_text import strip_controls

START = "\x1b[200~"
END = "\x1b[201~"


class PasteCleaner:
    """Feed it terminal input as it arrives; it returns what the parser should see."""

    def __init__(self) -> None:
        self.in_paste = False
        self.held = ""  # outside: a possible start of START; inside: the paste so far
        self.esc_sent = False  # outside: `held` begins with an ESC already passed on (the Escape key)

    def feed(self, data: str) -> str:
        out: list[str] = []
        data = self.held + data
        sent, self.held, self.esc_sent = self.esc_sent, "", False
        while data:
            if not self.in_paste:
                at = data.find(START)
                if at < 0:
                    keep = _partial_suffix(data, START)
                    if not keep and data.endswith("\x1b"):
                        out.append(data)  # the Escape key goes on now; a START may follow it
                        self.held, self.esc_sent = "\x1b", True
                        break
                    else:
                        self.esc_sent = sent and keep == len(data)
                        out.append(data[:len(data) - keep])
                    self.held = data[len(data) - keep:]
                    break
                out.append(data[:at + len(START)])
                data = data[at + len(START):]
                self.in_paste = True
            else:
                at = data.find(END)
                if at < 0:
                    self.held = data
                    break
                out.append(strip_controls(data[:at]) + END)
                data = data[at + len(END):]
                self.in_paste = False
        text = "".join(out)
        return text[1:] if sent and text.startswith("\x1b") else text


def _partial_suffix(data: str, marker: str) -> int:
    """How many characters at the end of `data` begin `marker` (at least 2: a lone ESC is
    the Escape key and must not wait; `feed` passes it on and remembers it)."""
    for n in range(min(len(marker) - 1, len(data)), 1, -1):
        if marker.startswith(data[-n:]):
            return n
    return 0


def driver_class(base):
    """`base` (the driver Textual picked), with `PasteCleaner` in front of its parser when
    it is the Linux/macOS terminal driver."""
    try:
        from textual.drivers import linux_driver
    except ImportError:  # pragma: no cover (Windows)
        return base
    if base is not linux_driver.LinuxDriver:
        return base

    class CleanPasteDriver(linux_driver.LinuxDriver):
        def run_input_thread(self) -> None:
            parser_class = linux_driver.XTermParser
            cleaner = PasteCleaner()

            class CleanPasteParser(parser_class):
                def feed(self, data: str):
                    return super().feed(cleaner.feed(data))

            linux_driver.XTermParser = CleanPasteParser  # looked up by name in run_input_thread
            try:
                super().run_input_thread()
            finally:
                linux_driver.XTermParser = parser_class

    return CleanPasteDriver
