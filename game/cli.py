"""The `storyteller` command: argument parsing and dispatch, nothing else.

Each subcommand calls into the module that owns the work; this module only
turns arguments into calls and errors into exit codes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from game import __version__
from game.diagnostics import GameFileError, display_path
from game.i18n import N_, _, language_for, ngettext, set_language
from game.safe_text import inert, inert_line
from game.sampling import SEED_MAX

# Exit codes (documented in docs/reliability.md): 0 done, 1 a file has problems, 2 bad usage
# or options, 74 standard input or output cannot be used (closed, full disk), 128 + N ended by
# signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP) after saving.
EXIT_IO = 74


def _whole_number(low: int, high: int, outside: str):
    """An argparse type: a whole number from `low` to `high`; `outside` says why another is refused."""
    def value(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(_("{text!r} is not a whole number").format(text=text)) from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(_(outside).format(value=number, top=high))
        return number
    return value


port_value = _whole_number(1, 65535, N_("{value} is not a port: use 1 to 65535"))  # --port
seed_value = _whole_number(0, SEED_MAX, N_("{value} is outside the allowed range 0 to {top}"))  # --seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storyteller",
        description="A terminal text adventure narrated by the Storyteller Spirit (distilgpt2).")
    parser.add_argument("--version", action="version", version=f"storyteller {__version__}")
    _game_options(parser)  # bare `storyteller` is the game: it takes play's game options
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    play = sub.add_parser("play", help="play a quest")
    play.add_argument("quest", nargs="?", help="quest file, folder or id")
    play.add_argument("--plain", action="store_true", help="play in a plain terminal (no TUI)")
    _game_options(play, model=False)
    play.add_argument("--load", metavar="SAVE", type=Path, help="continue a saved game (a save file)")
    play.add_argument("--continue", dest="resume", action="store_true",
                      help="continue the most recent autosave")
    play.add_argument("--watch", action="store_true",
                      help="reload the quest whenever its file is saved (for authors)")
    _model_options(play)
    play.add_argument("--context-log", metavar="FILE", type=Path,
                      help="append each prompt given to the model, as JSON lines")
    # set by `storyteller serve` for each browser's game (game.players): not for people to type
    play.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)

    serve = sub.add_parser("serve", help="serve the game to web browsers (one game per tab)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this computer only)")
    serve.add_argument("--port", type=port_value, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--max-players", type=int, metavar="N",
                       help="games at once (default: what the free memory allows)")
    serve.add_argument("--public", action="store_true",
                       help="allow an address other computers can reach (textual-serve has no login)")
    serve.add_argument("--no-spirit", action="store_true", help="serve without the narrator")
    serve.add_argument("--seed", type=seed_value, help="seed for every game's story")
    _model_options(serve)  # --server URL: one narrator server for every player's game

    narrate = sub.add_parser("narrate", help="the classic one-shot: the Spirit continues a prompt")
    narrate.add_argument("prompt")
    narrate.add_argument("--seed", type=seed_value, help="seed for a reproducible story (0 to 4294967295)")
    narrate.add_argument("--max-new-tokens", type=int, metavar="N", help="length of the story in tokens")
    _model_options(narrate)

    model = sub.add_parser("model", help="download or list narrator models")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    pull = model_sub.add_parser("pull", help="download a model into the Hugging Face cache")
    pull.add_argument("name", nargs="?", default="distilgpt2")
    model_sub.add_parser("list", help="show the cached models and their sizes")

    validate = sub.add_parser("validate", help="check quest files and folders for mistakes")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    validate.add_argument("--min-room", type=int, default=300, metavar="N",
                          help="warn when a scene leaves fewer than N tokens of the narrator's "
                               "window for history (default 300)")
    _server_options(validate)

    sub.add_parser("quests", help="list the bundled quests and your own")

    new = sub.add_parser("new", help="write a commented starter quest to edit")
    new.add_argument("name", help="quest name, e.g. my-quest (writes ./my-quest.yaml)")
    new.add_argument("--mine", action="store_true", help="write it into your own quests folder")

    bench = sub.add_parser("bench", help="measure the narrator's speed against the plain pipeline and other engines")
    bench.add_argument("--model", metavar="DIR", help="model folder (default: distilgpt2's shape, random weights)")
    bench.add_argument("--json", metavar="FILE", type=Path, help="also write the figures as JSON")
    bench.add_argument("--quality", action="store_true",
                       help="compare each precision with fp32 on a bundled English text (needs real weights)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="where the game and the pipeline run (llama.cpp's peers stay on the CPU)")
    bench.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                       help="the game side's precision")
    _server_options(bench)
    bench.add_argument("--peers", action="store_true",
                       help="also run llama.cpp (q8_0, f16) and CTranslate2 on the same weights, alternating")
    bench.add_argument("--proxy-seconds", type=float, metavar="S",
                       help="with --quality: how long the proxy model trains (default 150)")

    qmap = sub.add_parser("map", help="show a quest's scenes and where they lead")
    qmap.add_argument("quest", help="quest file, folder or id")
    qmap.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    return parser


def _game_options(parser: argparse.ArgumentParser, model: bool = True) -> None:
    """The options of a game: `storyteller` and `storyteller play` take the same ones."""
    parser.add_argument("--seed", type=seed_value, help="seed for reproducible stories (0 to 4294967295)")
    parser.add_argument("--no-spirit", action="store_true",
                        help="play without the language-model narrator (authored text only)")
    if model:
        _model_options(parser)


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="M", help="hub id or local model folder (default: distilgpt2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model runs")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                        help="the model's number format")
    parser.add_argument("--personality", metavar="P", help="narrator personality id")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"),
                        help="how the narrator does its sums (auto picks what is fast and safe here)")
    _server_options(parser)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help="narrate with an OpenAI-compatible inference server, e.g. "
                             "http://127.0.0.1:8080/v1 (see docs/narrators.md)")
    parser.add_argument("--server-model", metavar="NAME",
                        help="the server's model to use (default: its only or first one)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with standard output closed: nowhere to say anything else
        if sys.stderr is not None:
            print(_("storyteller: standard output is closed; nothing can be shown"), file=sys.stderr)
        return EXIT_IO
    set_language("en")  # the commands speak English; a game follows its quest (and the settings)
    try:
        code = _dispatch(parser, args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except OSError as exc:
        if not _is_stdio_error(exc):
            raise
        _quiet_stdout()
        _say_error(_("storyteller: cannot write the output: {reason}").format(
            reason=exc.strerror or exc))
        return EXIT_IO


def _is_stdio_error(exc: OSError) -> bool:
    """An error writing standard output (full disk, closed): the one kind main turns into 74."""
    import errno

    return exc.errno in (errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT, errno.EFBIG)


def _quiet_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush cannot fail again."""
    import os

    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def _say_error(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError, AttributeError):
        pass


def _dispatch(parser, args) -> int:
    if args.command == "validate":
        return cmd_validate(args)
    if args.command == "quests":
        return cmd_quests(args)
    if args.command in ("play", None):
        return cmd_play(args)
    if args.command == "narrate":
        return cmd_narrate(args)
    if args.command == "model":
        return cmd_model(args)
    if args.command == "new":
        return cmd_new(args)
    if args.command == "map":
        return cmd_map(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "bench":
        from game.bench import run_bench

        if args.device != "cpu" and (args.server is not None or args.quality):
            print(f"storyteller bench: --device {args.device} is for the speed benchmark; "
                  f"{'--server' if args.server is not None else '--quality'} does not use it", file=sys.stderr)
            return 2
        if args.server is not None:
            from game.bench import run_server_bench

            return run_server_bench(args.server, args.server_model, args.model, args.json,
                                    quick=args.quick, precision=args.precision)
        return run_bench(args.model, args.json, args.quality, quick=args.quick, precision=args.precision,
                         peers=args.peers, proxy_seconds=args.proxy_seconds, device=args.device)
    parser.print_help()  # pragma: no cover (argparse rejects unknown commands)
    return 2


def cmd_validate(args) -> int:
    from game.world.loader import check_quest, resolve_quest_path

    errors = warnings = 0
    budget = None  # (tokenizer, window, personalities): loaded for the first quest with no errors only
    for path in [p for raw in args.paths for p in _quest_paths(Path(raw))]:
        quest, problems = check_quest(path)  # syntax and schema first: no tokenizer loads for a broken file
        if quest is not None and not any(p.severity == "error" for p in problems):
            from game.personality import DEFAULT_PERSONALITY
            from game.world.lint import lint

            if budget is None:
                budget = _budget_tools(args)
            tokenizer, window, personalities = budget
            voice = personalities.get(quest.personality) or personalities[DEFAULT_PERSONALITY]
            problems += lint(quest, tokenizer=tokenizer, max_new_tokens=voice.sampling.max_new_tokens,
                             persona=voice.persona, min_room=args.min_room, window=window)
        for p in problems:
            print(p.format())
        errors += sum(p.severity == "error" for p in problems)
        warnings += sum(p.severity == "warning" for p in problems)
        if quest is not None and not any(p.severity == "error" for p in problems):
            counts = ", ".join([
                ngettext("{n} scene", "{n} scenes", len(quest.scenes)).format(n=len(quest.scenes)),
                ngettext("{n} ending", "{n} endings", len(quest.endings)).format(n=len(quest.endings)),
                ngettext("{n} item", "{n} items", len(quest.items)).format(n=len(quest.items)),
                ngettext("{n} flag", "{n} flags", len(quest.flags)).format(n=len(quest.flags))])
            print(f"{inert_line(display_path(resolve_quest_path(path)))}: ok: \"{inert_line(quest.title)}\" ({quest.id}): {counts}")
    if errors or warnings:
        print(ngettext("{n} error", "{n} errors", errors).format(n=errors) + ", "
              + ngettext("{n} warning", "{n} warnings", warnings).format(n=warnings))
    return 1 if errors or (args.strict and warnings) else 0


def _budget_tools(args):
    """(tokenizer, window, personalities) for the token-budget check: the narrator's server's
    tokenizer and window when a server narrates (--server, or the settings' server: section),
    else GPT-2's vocabulary through `tokenizers` (never transformers) and its 1024 tokens."""
    from game.personality import load_personalities

    budget = _server_budget(args)
    if budget is None:  # the local Spirit: GPT-2's tokenizer and window
        from game.world.budget import budget_tokenizer

        (tokenizer, reason), window = budget_tokenizer(), 1024
        if reason:
            print(inert_line(_("note: the token-budget check is skipped: {reason}").format(reason=reason)),
                  file=sys.stderr)
    else:
        tokenizer, window = budget
    return tokenizer, window, load_personalities()[0]


def _server_budget(args):
    """(tokenizer, window) for the token-budget check when a server narrates (--server, or the
    settings' server: section), else None. Says on stderr what the budget is checked against,
    and so whether the counts are the server's or only an upper bound."""
    from game.settings import load_settings

    try:
        config = load_settings()[0].server_config(getattr(args, "server", None),
                                                  getattr(args, "server_model", None))
    except ValueError as exc:
        print(f"storyteller: {inert(str(exc))}; the token budget is checked for the local Spirit",
              file=sys.stderr)
        return None
    if config is None:
        return None
    from game.narrator.remote import ServerNarrator

    narrator = ServerNarrator(config)
    narrator.load()
    if narrator.status != "ready":
        print(f"note: the narrator's server cannot be reached ({inert(narrator.reason or '')}); the token "
              "budget is checked for the local Spirit instead", file=sys.stderr)
        return None
    print(f"note: the token budget is checked for the {inert(narrator.describe())}", file=sys.stderr)
    return narrator.tokenizer, narrator.window - narrator.prompt_reserve


def _quest_paths(path: Path) -> list[Path]:
    """What `validate PATH` checks: a quest file, a quest folder (with quest.yaml), or a folder
    of quests (each .yaml/.yml file in it and each quest folder in it, in name order)."""
    from game.world.schema import QUEST_FILE

    if not path.is_dir() or os.path.lexists(path / QUEST_FILE):  # a quest folder, even a broken link
        return [path]
    found = sorted(p for p in path.iterdir()
                   if (p.is_file() and p.suffix.lower() in (".yaml", ".yml"))
                   or (p.is_dir() and (p / QUEST_FILE).is_file()))
    return found or [path / QUEST_FILE]  # none: "file not found" names what was looked for


def cmd_quests(args) -> int:
    from game import locations
    from game.catalog import all_quests

    entries = all_quests()
    if not entries:
        print(_("No quests found."))
    for e in entries:
        status = "  " + _("[has errors: run storyteller validate]") if not e.playable else ""
        print(inert_line(f"{e.id}  ({e.origin}, {e.language})  {e.title} " +
                         _("by {author}").format(author=e.author) + status))
        if e.summary:
            print(f"    {inert(e.summary)}")
        print(f"    {inert_line(display_path(e.path))}")
    print("\n" + inert_line(_("Your own quests go in: {folder}").format(folder=locations.user_quests_dir())))
    return 0


def _resolve_quest(name: str | None) -> Path | None:
    from game.catalog import all_quests, find_quest

    if name is None:
        entries = [e for e in all_quests() if e.playable]
        return entries[0].path if entries else None
    return find_quest(name)


def _open_quest(name: str | None, after_errors: str = ""):
    """(quest, 0), or (None, exit code) after saying on stderr why it cannot be used."""
    from game.world.loader import load_quest

    path = _resolve_quest(name)
    if path is None:
        print(inert_line(_("storyteller: no quest named '{name}'; see `storyteller quests`").format(name=name)),
              file=sys.stderr)
        return None, 2
    try:
        return load_quest(path), 0
    except GameFileError as exc:
        for p in exc.problems:
            print(p.format(), file=sys.stderr)
        if after_errors:
            print(after_errors, file=sys.stderr)
        return None, 1


def cmd_play(args) -> int:
    """`storyteller` and `storyteller play [QUEST]`: the TUI, or plain mode with --plain."""
    from game.engine import Engine
    from game.plain import PlainGame

    from game.session import Session, latest_autosave, remove_stale_files

    quest_name = getattr(args, "quest", None)
    plain = getattr(args, "plain", False)
    if getattr(args, "guest", False):
        refused = [flag for flag, given in (("QUEST", quest_name), ("--plain", plain), ("--load", args.load),
                                            ("--continue", args.resume), ("--watch", args.watch),
                                            ("--context-log", args.context_log)) if given]
        if refused:
            _say_error(_("storyteller: a served game (--guest) does not take {options}")
                       .format(options=", ".join(refused)))
            return 2
    if sys.stdin is None:
        _say_error(_("storyteller: standard input is closed; there is no way to play"))
        return EXIT_IO
    problem = check_context_log(getattr(args, "context_log", None))
    if problem:
        _say_error(_("storyteller: --context-log {problem}").format(problem=problem))
        return 2
    remove_stale_files()
    session = None
    save_path = getattr(args, "load", None)
    if getattr(args, "resume", False):
        save_path = latest_autosave()
        if quest_name is not None:  # `play QUEST --continue`: that quest's own autosave
            from game.catalog import find_quest
            from game.world.loader import check_quest
            from game.session import autosave_dir, autosave_name

            found = find_quest(quest_name)
            quest = check_quest(found)[0] if found is not None else None
            own = autosave_dir() / autosave_name(quest.id) if quest is not None else None
            save_path = own if own is not None and own.is_file() else None
        if save_path is None:
            print(_("storyteller: there is no autosave to continue yet"), file=sys.stderr)
            return 2
    if save_path is not None:
        quest = None
        if quest_name is not None:  # the player names the save's quest: use that file
            quest, code = _open_quest(quest_name, _("The quest cannot be played until these are fixed."))
            if quest is None:
                return code
        try:
            session = Session.load(save_path, quest)
        except GameFileError as exc:
            for p in exc.problems:
                print(p.format(), file=sys.stderr)
            if Path(save_path).exists():
                print(_("The save was left as it is."), file=sys.stderr)
            return 1
        for note in session.load_notes:
            print(inert_line(_("note: {note}").format(note=note)), file=sys.stderr)
    if not plain:
        return run_tui(args, quest_name if session is None else None, session)
    if session is not None:
        quest = session.quest
    else:
        quest, code = _open_quest(quest_name, _("The quest cannot be played until these are fixed."))
        if quest is None:
            return code
    loaded = _load_settings()
    set_language(language_for(quest.language, loaded[0].language))
    narrate = None
    if not args.no_spirit:
        from game.plain import PlainSpirit

        narrator = _turn_narrator(args, quest, loaded)
        if narrator is None:
            return 2
        narrator.service.start()
        narrate = PlainSpirit(narrator)
    game = session if session is not None else Engine(quest, seed=args.seed)
    return PlainGame(game, narrate=narrate, watch=args.watch, autosave=loaded[0].autosave).run()


def check_context_log(path) -> str | None:
    """Why `path` cannot take the context log (a folder, a device, under a file...), or None.

    Checked before play starts; the file is created (empty) if it does not exist.
    """
    import os
    import stat

    if path is None:
        return None
    path = Path(path)
    shown = inert_line(str(path))
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            return _("{path} is not a regular file (a folder or a device); give the path of a "
                     "file to append to").format(path=shown)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as exc:
        return _("{path} cannot be written: {reason}").format(path=shown, reason=exc.strerror or exc)
    return None


def run_tui(args, quest_name: str | None, session=None) -> int:
    """Start the Textual app; the model loads in the background once it is up."""
    from game.tui.app import make_app

    path = None
    if quest_name is not None:
        path = _resolve_quest(quest_name)
        if path is None:
            print(inert_line(_("storyteller: no quest named '{name}'; see `storyteller quests`").format(
                name=quest_name)), file=sys.stderr)
            return 2
    settings, personalities = _load_settings()
    narrator = None
    if not getattr(args, "no_spirit", False):
        narrator = _turn_narrator(args, loaded=(settings, personalities))
        if narrator is None:
            return 2
    guest = None
    if getattr(args, "guest", False):
        from game.players import Guest

        guest = Guest.for_host()
    app = make_app(settings, personalities, narrator=narrator, quest_path=path, session=session,
                   seed=getattr(args, "seed", None), watch=getattr(args, "watch", False), guest=guest)
    app.handle_signals = True  # SIGTERM, SIGHUP, SIGINT: autosave, restore the terminal, exit
    app.run()
    return app.return_code or 0


def _load_settings():
    """Settings and personalities; problems in the player's files are warnings here."""
    from game.personality import load_personalities
    from game.settings import load_settings

    personalities, problems = load_personalities()
    settings, more = load_settings(personalities=personalities)
    for p in problems + more:
        print(p.format(), file=sys.stderr)
    return settings, personalities


def _turn_narrator(args, quest=None, loaded=None):
    """The narrator asked for by settings and command-line options (None: bad option, said)."""
    from game.narration import make_turn_narrator

    settings, personalities = loaded or _load_settings()
    personality = getattr(args, "personality", None)
    if personality and personality not in personalities:
        print(inert_line(_("storyteller: unknown personality '{name}'; known: {known}").format(
            name=personality, known=", ".join(personalities))), file=sys.stderr)
    try:
        return make_turn_narrator(settings, personalities, quest=quest, model=getattr(args, "model", None),
                                  device=getattr(args, "device", None), dtype=getattr(args, "dtype", None),
                                  seed=getattr(args, "seed", None), personality=personality,
                                  precision=getattr(args, "precision", None),
                                  context_log=getattr(args, "context_log", None),
                                  server=getattr(args, "server", None),
                                  server_model=getattr(args, "server_model", None))
    except ValueError as exc:  # a bad --server URL
        print(f"storyteller: {inert(str(exc))}", file=sys.stderr)
        return None


def cmd_narrate(args) -> int:
    narrator = _turn_narrator(args)
    if narrator is None:
        return 2
    sampling = narrator.sampling
    if args.max_new_tokens is not None:
        from game.sampling import check_value

        value, problem = check_value("max_new_tokens", args.max_new_tokens)
        if problem:
            print(f"storyteller: {problem}", file=sys.stderr)
            return 2
        sampling = sampling.with_values(max_new_tokens=value)
    service = narrator.service
    print(_("(The Storyteller Spirit is waking...)"), file=sys.stderr)
    service.load()
    if service.status != "ready":
        print(inert_line(_("storyteller: the Spirit is silent: {reason}").format(reason=service.reason)),
              file=sys.stderr)
        return 1

    sys.stdout.write(inert(args.prompt))
    sys.stdout.flush()
    try:
        for chunk in service.stream(args.prompt, sampling, seed=narrator.seed, stop_strings=()):
            sys.stdout.write(inert(chunk))
            sys.stdout.flush()
    except Exception as exc:  # the model failed mid-story: say so in one line
        print("\n" + inert_line(_("storyteller: the Spirit lost its words: {error}").format(
            error=str(exc).splitlines()[0] if str(exc) else repr(exc))), file=sys.stderr)
        return 1
    sys.stdout.write("\n")
    return 0


def cmd_model(args) -> int:
    from game.narrator import hub

    if args.model_command == "pull":
        return hub.pull(args.name, out=sys.stderr)
    models = hub.cached_models()
    if not models:
        print(_("No models in the Hugging Face cache. Download one with: storyteller model pull"))
        return 0
    for m in models:
        print(inert_line(f"{m.repo_id}  {hub.format_size(m.size)}  {m.path}"))
    return 0


def cmd_new(args) -> int:
    from game import locations
    from game.scaffold import scaffold

    try:
        path = scaffold(args.name, locations.user_quests_dir() if args.mine else None)
    except (ValueError, OSError) as exc:  # FileExistsError is an OSError
        print(f"storyteller: {inert(str(exc))}", file=sys.stderr)
        return 1
    shown = display_path(path)
    print(_("Wrote {path}\nCheck it:  storyteller validate {path}\nPlay it:   storyteller play {path} --plain --watch")
          .format(path=shown))
    return 0


def cmd_serve(args) -> int:
    from game.serve import run

    if args.max_players is not None and args.max_players < 1:
        _say_error(_("storyteller serve: --max-players must be 1 or more"))
        return 2
    return run(args)


def cmd_map(args) -> int:
    from game.world.map import render_map

    quest, code = _open_quest(args.quest)
    if quest is None:
        return code
    sys.stdout.write(render_map(quest, args.format))
    return 0
