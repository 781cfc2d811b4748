"""The served game in a real headless browser: Debian's chromium driven by Selenium through
/usr/bin/chromedriver (never Selenium's own driver manager: it downloads, and fails offline).

The page loads with textual-serve's Start button (``?delay=1``), which is clicked (it calls
the page's ``refresh()``); the player types a name, picks a quest and plays two turns by
typing, narrated by the tiny GPT-2 (random weights: the words are nonsense, but they are
the real narrator's, streamed to the browser). The test reads what reached the browser
(a script on the page records the terminal's websocket bytes), checks the player's
autosave, and saves a screenshot (to ``$STORYTELLER_SCREENSHOTS`` when set, else the
test's temporary folder). Without chromium, chromedriver or selenium it skips, saying how
to get them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from game import locations
from game.players import inside
from game.saves import read_save
from tests.serving import ESCAPES, serving

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOW = ("no headless browser here: install Debian's chromium and chromedriver "
       "(apt-get install -y chromium chromium-driver) and selenium (pip install -e '.[dev]')")

try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = pytest.mark.skipif(not (CHROMIUM and os.path.exists(CHROMEDRIVER) and HAVE_SELENIUM), reason=HOW)

# Records every binary websocket message the page receives (what the terminal is sent).
RECORDER = """
window.__received = [];
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const socket = protocols ? new Native(url, protocols) : new Native(url);
  socket.addEventListener("message", (e) => {
    if (typeof e.data !== "string") window.__received.push(Array.from(new Uint8Array(e.data)));
  });
  return socket;
};
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
"""


def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,800", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
    return driver


class Page:
    """The game page in the browser: what its terminal was sent, and typing into it."""

    def __init__(self, driver):
        self.driver = driver

    def text(self) -> str:
        chunks = self.driver.execute_script("return window.__received || [];")
        raw = b"".join(bytes(chunk) for chunk in chunks)
        return ESCAPES.sub(b"", raw).decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.text())
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} never reached the browser; it showed:\n{self.text()[-1500:]}")
            time.sleep(0.25)

    def type(self, text: str) -> None:
        """Type as a person does, one key at a time, into the terminal's keyboard box."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        box = self.driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
        for ch in text:
            box.send_keys(Keys.ENTER if ch == "\n" else ch)
            time.sleep(0.08)


def test_a_player_plays_two_narrated_turns_in_a_real_browser(tiny_model_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("STORYTELLER_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with serving("--model", str(tiny_model_dir), "--device", "cpu", "--seed", "7", "--max-players", "2") as served:
        driver = browser(tmp_path)
        try:
            driver.get(served.url + "?delay=1")  # textual-serve's Start page
            start = WebDriverWait(driver, 60).until(ready.element_to_be_clickable((By.ID, "start")))
            start.click()  # calls the page's refresh(): the page reloads and its game starts
            page = Page(driver)
            page.wait_for("Your name")
            WebDriverWait(driver, 30).until(
                ready.presence_of_element_located((By.CSS_SELECTOR, ".xterm-helper-textarea")))
            time.sleep(1.5)  # the name box takes the keyboard once the screen has settled
            page.type("Robin\n")
            page.wait_for("Playing as Robin")
            page.wait_for(r"Spirit is (ready|awake)", timeout=300)  # the tiny GPT-2 has loaded
            page.type("\n")  # the first quest, highlighted: The Call of the Storyteller
            page.wait_for("The Gate of Dead Links")
            autosave = locations.players_dir() / "robin" / "saves" / "autosave" / "call-of-the-storyteller.json"
            for turn, action in enumerate(["1", "1"], start=1):
                time.sleep(1)
                page.type(action + "\n")
                deadline = time.monotonic() + 300
                while True:  # the game records a narration once it has streamed it to the screen
                    history = read_save(autosave).history if autosave.exists() else []
                    if len(history) >= turn and history[turn - 1].narration:
                        break
                    assert time.monotonic() < deadline, f"turn {turn} was never narrated"
                    time.sleep(0.5)
            time.sleep(2)
            driver.save_screenshot(str(shots / "browser-two-turns.png"))
            shown = " ".join(page.text().split())
            history = read_save(autosave).history
            assert [t.action for t in history] == ["Take the cursor lantern", "Read the glyphs on the archway"] \
                or [t.action for t in history] == ["1", "1"]
            for record in history:  # the narration reached the browser: its first words are there
                words = record.narration.split()[:2]
                assert " ".join(words) in shown, (words, shown[-800:])
            assert "You lift the lantern off its hook" in shown
        finally:
            driver.quit()
    assert (shots / "browser-two-turns.png").stat().st_size > 10_000
    players = locations.players_dir()
    assert all(inside(p, players) for p in locations.data_dir().rglob("*") if p != players)
