"""`storyteller serve`: the game in a browser, one game process per browser tab.

textual-serve runs a shell command for every browser connection (its
`AppService`) and relays the terminal through a websocket; the command here is
`storyteller play --guest` with the host's narrator options, so every tab is a
guest game that asks for a player name (see `game.players`). `GameServer`
adds what a host needs around textual-serve:

* at most `max_players` games at once: the next browser gets a page (or, if it
  already has the page, a terminal message) saying the game is full;
* a game whose tab was closed is told to quit and, if it has not gone within
  `STOP_GRACE` seconds, is killed, so its place frees up;
* page addresses built from the browser's own request, so that a game served on
  0.0.0.0 or behind a reverse proxy points the browser at the right websocket.

Binding to anything but a loopback address needs `--public`, and a warning:
textual-serve has no login (docs/serving.md shows a reverse proxy with a password).
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import logging
import re
import shlex
import sys

from game.i18n import _
from game.procfs import available_memory
from game.safe_text import inert_line

log = logging.getLogger("storyteller.serve")

MB = 1024 * 1024
# Resident memory of one game process, rounded up from what docs/serving.md measured on
# Linux x86-64: 43 MB without a model (Python, Textual, the game); a little more with
# --server (the model is elsewhere); 456 MB with a local distilgpt2 (torch, the weights
# at precision auto, the key/value cache) after its first narrated turn.
FOOTPRINT = {"silent": 60 * MB, "server": 80 * MB, "local": 500 * MB}
MEMORY_SHARE = 0.75  # of the memory available when the server starts
MAX_DEFAULT_PLAYERS = 64
STOP_GRACE = 10.0  # seconds a game may take to quit after its tab closed
STDIN_MAX = 16_384  # characters of one keyboard message from a browser (a paste is one message)
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"
# play's options that describe the narrator; serve passes them on to every game
NARRATOR_OPTIONS = ("model", "device", "dtype", "personality", "precision", "server", "server_model")

# What a Host / X-Forwarded-Host header may hold to be put into the page: a name or an
# address, with a port.
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def narrator_mode(no_spirit: bool, server: str | None) -> str:
    return "silent" if no_spirit else "server" if server else "local"


def default_max_players(mode: str, available: int | None) -> int:
    """How many games fit in `MEMORY_SHARE` of the available memory (4 if it is unknown)."""
    if available is None:
        return 4
    return max(1, min(MAX_DEFAULT_PLAYERS, int(available * MEMORY_SHARE) // FOOTPRINT[mode]))


def game_command(options: dict, no_spirit: bool = False, seed: int | None = None) -> str:
    """The shell command textual-serve runs for each browser: a guest game with these options."""
    words = [sys.executable, "-m", "game", "play", "--guest"]
    for name in NARRATOR_OPTIONS:
        value = options.get(name)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if no_spirit:
        words.append("--no-spirit")
    if seed is not None:
        words += ["--seed", str(seed)]
    return shlex.join(words)


def bounded_input(data: str) -> str:
    """One keyboard message from a browser, cut to `STDIN_MAX` characters; a cut paste
    keeps its closing marker, so the game does not take what follows for more paste."""
    if len(data) <= STDIN_MAX:
        return data
    if data.startswith(PASTE_START):
        return data[:STDIN_MAX - len(PASTE_END)] + PASTE_END
    return data[:STDIN_MAX]


def full_page(limit: int) -> str:
    """The page a browser gets when every place is taken."""
    title = html.escape(_("The game is full"))
    body = html.escape(_("All {n} places at this Storyteller table are taken. Try again when a "
                         "player has closed their tab.").format(n=limit))
    again = html.escape(_("Try again"))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body style='background:#0c181f;color:#eee;font-family:monospace;padding:3em'>"
            f"<h1 id='full'>{title}</h1><p>{body}</p>"
            f"<p><a style='color:#ac5af4' href='/'>{again}</a></p></body></html>")


def make_server(command: str, host: str, port: int, max_players: int, title: str = "Storyteller"):
    """A `GameServer` (imports textual-serve and aiohttp only when serving)."""
    from aiohttp import WSMsgType, web
    from textual_serve.app_service import AppService
    from textual_serve.server import Server, to_int

    class GameServer(Server):
        def __init__(self):
            super().__init__(command, host=host, port=port, title=title)
            self.max_players = max_players
            self.playing = 0  # games running now
            self.games: set = set()  # their AppServices

        async def on_startup(self, app) -> None:  # textual-serve prints its logo here
            pass

        async def handle_index(self, request):
            if self.playing >= self.max_players:
                return web.Response(text=full_page(self.max_players), status=503,
                                    content_type="text/html")
            self.public_url = self._base_url(request)  # textual-serve builds its addresses from it
            return await super().handle_index(request)

        def _base_url(self, request) -> str:
            # the address the browser used (works on 0.0.0.0 and behind a proxy at /)
            scheme = request.headers.get("X-Forwarded-Proto", request.scheme)
            host_header = request.headers.get("X-Forwarded-Host", request.host)
            if not _HOST.fullmatch(host_header or ""):  # it goes into the page: a host name or nothing
                host_header = request.host if _HOST.fullmatch(request.host or "") else "127.0.0.1"
            return f"{'https' if scheme == 'https' else 'http'}://{host_header}"

        async def handle_websocket(self, request):
            websocket = web.WebSocketResponse(heartbeat=15)
            await websocket.prepare(request)
            if self.playing >= self.max_players:
                message = _("The game is full: all {n} places are taken. Try again later.").format(
                    n=self.max_players)
                await websocket.send_bytes(("\r\n  " + message + "\r\n").encode("utf-8"))
                await websocket.close()
                return websocket
            self.playing += 1
            service = None
            try:
                service = AppService(self.command, write_bytes=websocket.send_bytes,
                                     write_str=websocket.send_str, close=websocket.close,
                                     download_manager=self.download_manager, debug=self.debug)
                self.games.add(service)
                await service.start(to_int(request.query.get("width", "80"), 80),
                                    to_int(request.query.get("height", "24"), 24))
                await self._process_messages(websocket, service)
            except asyncio.CancelledError:
                await websocket.close()
            except Exception as error:  # one game's failure never stops the others
                log.exception(error)
            finally:
                if service is not None:
                    await self._stop(service)
                    self.games.discard(service)
                self.playing -= 1
            return websocket

        async def _process_messages(self, websocket, service) -> None:
            """textual-serve's relay, with each keyboard message bounded (`bounded_input`)."""
            async for message in websocket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    envelope = message.json()
                    kind, data = envelope[0], envelope[1] if len(envelope) > 1 else None
                except (ValueError, TypeError, IndexError, KeyError):
                    continue  # not what the page sends: ignored
                if kind == "stdin" and isinstance(data, str):
                    await service.send_bytes(bounded_input(data).encode("utf-8"))
                elif kind == "resize" and isinstance(data, dict):
                    await service.set_terminal_size(to_int(str(data.get("width")), 80),
                                                    to_int(str(data.get("height")), 24))
                elif kind == "ping":
                    await websocket.send_json(["pong", data])
                elif kind == "blur":
                    await service.blur()
                elif kind == "focus":
                    await service.focus()

        async def _stop(self, service) -> None:
            """Tell the game to quit; kill it if it has not gone within STOP_GRACE seconds."""
            try:
                await asyncio.wait_for(asyncio.shield(service.stop()), STOP_GRACE)
            except (asyncio.TimeoutError, Exception):
                process = service._process  # textual-serve keeps no other handle on it
                if process is not None and process.returncode is None:
                    process.kill()
                    await process.wait()

        async def on_shutdown(self, app) -> None:
            for service in list(self.games):
                await self._stop(service)

    return GameServer()


def _settings_server() -> str | None:
    """The server narrator named in the host's settings file, if any (quietly: `play` reports
    problems in that file)."""
    try:
        from game.settings import load_settings

        return (load_settings()[0].server or {}).get("url") or None
    except Exception:  # noqa: BLE001 (an unreadable settings file: the games will say why)
        return None


def run(args, out=None, err=None) -> int:
    """`storyteller serve`: check the address, size the table, serve until Ctrl+C."""
    out, err = out or sys.stdout, err or sys.stderr
    if not is_loopback(args.host) and not args.public:
        print(_("storyteller serve: {host} can be reached from other computers, and textual-serve "
                "has no login. Add --public to serve there anyway (see docs/serving.md: put it "
                "behind a reverse proxy with a password).").format(host=args.host), file=err)
        return 2
    try:
        import textual_serve  # noqa: F401
    except ImportError:
        print(_("storyteller serve needs textual-serve: pip install 'textual-serve>=1.1,<2'"), file=err)
        return 1
    server = getattr(args, "server", None) or _settings_server()
    mode = narrator_mode(args.no_spirit, server)
    available = available_memory()
    limit = args.max_players or default_max_players(mode, available)
    options = {name: getattr(args, name, None) for name in NARRATOR_OPTIONS}
    command = game_command(options, no_spirit=args.no_spirit, seed=args.seed)
    if not is_loopback(args.host):
        print(_("WARNING: serving on {host}: anyone who can reach this address can play, and "
                "textual-serve has no login. Put it behind a reverse proxy with a password "
                "(docs/serving.md).").format(host=args.host), file=err)
    per_player = FOOTPRINT[mode] // MB
    narrator = {"silent": _("no narrator (--no-spirit)"),
                "server": _("the shared narrator at {url}").format(url=server),
                "local": _("a Spirit of its own in every game")}[mode]
    print(_("Storyteller is served at http://{host}:{port}/ (open it in a browser)")
          .format(host=args.host if ":" not in args.host else f"[{args.host}]", port=args.port), file=out)
    print(_("Narrator: {narrator}; about {mb} MB of memory per player; room for {n} at once "
            "(--max-players).").format(narrator=narrator, mb=per_player, n=limit), file=out)
    print(_("Press Ctrl+C to stop."), file=out, flush=True)
    server = make_server(command, args.host, args.port, limit)
    try:
        server.serve()
    except OSError as exc:  # the port is taken, or not ours to use
        print(inert_line(_("storyteller serve: cannot listen on {host}:{port}: {reason}").format(
            host=args.host, port=args.port, reason=exc.strerror or exc)), file=err)
        return 2
    return 0
