"""The `storyteller` command: argument parsing and dispatch, nothing else.

Each subcommand calls into the module that owns the work; this module only
turns arguments into calls and errors into exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from game import __version__
from game.diagnostics import GameFileError, display_path
from game.safe_text import inert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="storyteller",
        description="A terminal text adventure narrated by the Storyteller Spirit (distilgpt2).")
    parser.add_argument("--version", action="version", version=f"storyteller {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    play = sub.add_parser("play", help="play a quest")
    play.add_argument("quest", nargs="?", help="quest file, folder or id")
    play.add_argument("--plain", action="store_true", help="play in a plain terminal (no TUI)")
    play.add_argument("--seed", type=int, help="seed for reproducible stories")
    play.add_argument("--no-spirit", action="store_true",
                      help="play without the language-model narrator (authored text only)")
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
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--max-players", type=int, metavar="N",
                       help="games at once (default: what the free memory allows)")
    serve.add_argument("--public", action="store_true",
                       help="allow an address other computers can reach (textual-serve has no login)")
    serve.add_argument("--no-spirit", action="store_true", help="serve without the narrator")
    serve.add_argument("--seed", type=int, help="seed for every game's story")
    serve.add_argument("--server", metavar="URL",
                       help="one narrator server (OpenAI-compatible) for every player's game")
    _model_options(serve)

    narrate = sub.add_parser("narrate", help="the classic one-shot: the Spirit continues a prompt")
    narrate.add_argument("prompt")
    narrate.add_argument("--seed", type=int, help="seed for a reproducible story")
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

    sub.add_parser("quests", help="list the bundled quests and your own")

    new = sub.add_parser("new", help="write a commented starter quest to edit")
    new.add_argument("name", help="quest name, e.g. my-quest (writes ./my-quest.yaml)")
    new.add_argument("--mine", action="store_true", help="write it into your own quests folder")

    bench = sub.add_parser("bench", help="measure the narrator's speed against the plain pipeline")
    bench.add_argument("--model", metavar="DIR", help="model folder (default: distilgpt2's shape, random weights)")
    bench.add_argument("--json", metavar="FILE", type=Path, help="also write the figures as JSON")
    bench.add_argument("--quality", action="store_true",
                       help="compare each precision with fp32 on a bundled English text (needs real weights)")
    bench.add_argument("--quick", action="store_true", help="fewer repetitions")
    bench.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                       help="the game side's precision")

    qmap = sub.add_parser("map", help="show a quest's scenes and where they lead")
    qmap.add_argument("quest", help="quest file, folder or id")
    qmap.add_argument("--format", choices=("text", "mermaid", "dot"), default="text")
    return parser


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="M", help="hub id or local model folder (default: distilgpt2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="where the model runs")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                        help="the model's number format")
    parser.add_argument("--personality", metavar="P", help="narrator personality id")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"),
                        help="how the narrator does its sums (auto picks what is fast and safe here)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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

            return run_bench(args.model, args.json, args.quality, quick=args.quick, precision=args.precision)
        parser.print_help()  # pragma: no cover (argparse rejects unknown commands)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def cmd_validate(args) -> int:
    from game.personality import DEFAULT_PERSONALITY, load_personalities
    from game.quest_lint import budget_tokenizer, lint
    from game.quest_loader import check_quest, resolve_quest_path

    tokenizer, reason = budget_tokenizer()
    if reason:
        print(f"note: the token-budget check is skipped: {reason}", file=sys.stderr)
    personalities, _ = load_personalities()
    errors = warnings = 0
    for raw in args.paths:
        path = Path(raw)
        quest, problems = check_quest(path)
        if quest is not None and not any(p.severity == "error" for p in problems):
            voice = personalities.get(quest.personality) or personalities[DEFAULT_PERSONALITY]
            problems += lint(quest, tokenizer=tokenizer, max_new_tokens=voice.sampling.max_new_tokens,
                             persona=voice.persona, min_room=args.min_room)
        for p in problems:
            print(p.format())
        errors += sum(p.severity == "error" for p in problems)
        warnings += sum(p.severity == "warning" for p in problems)
        if quest is not None and not any(p.severity == "error" for p in problems):
            print(f"{display_path(resolve_quest_path(path))}: ok: \"{inert(quest.title)}\" ({quest.id}): "
                  f"{_count(len(quest.scenes), 'scene')}, {_count(len(quest.endings), 'ending')}, "
                  f"{_count(len(quest.items), 'item')}, {_count(len(quest.flags), 'flag')}")
    if errors or warnings:
        print(f"{_count(errors, 'error')}, {_count(warnings, 'warning')}")
    return 1 if errors or (args.strict and warnings) else 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def cmd_quests(args) -> int:
    from game import locations
    from game.catalog import all_quests

    entries = all_quests()
    if not entries:
        print("No quests found.")
    for e in entries:
        status = "" if e.playable else "  [has errors: run storyteller validate]"
        print(inert(f"{e.id}  ({e.origin}, {e.language})  {e.title} by {e.author}{status}"))
        if e.summary:
            print(f"    {inert(e.summary)}")
        print(f"    {display_path(e.path)}")
    print(f"\nYour own quests go in: {locations.user_quests_dir()}")
    return 0


def _resolve_quest(name: str | None) -> Path | None:
    from game.catalog import all_quests, find_quest

    if name is None:
        entries = [e for e in all_quests() if e.playable]
        return entries[0].path if entries else None
    return find_quest(name)


def _open_quest(name: str | None, after_errors: str = ""):
    """(quest, 0), or (None, exit code) after saying on stderr why it cannot be used."""
    from game.quest_loader import load_quest

    path = _resolve_quest(name)
    if path is None:
        print(f"storyteller: no quest named '{name}'; see `storyteller quests`", file=sys.stderr)
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

    from game.session import Session, latest_autosave

    quest_name = getattr(args, "quest", None)
    plain = getattr(args, "plain", False)
    if getattr(args, "guest", False):
        refused = [flag for flag, given in (("QUEST", quest_name), ("--plain", plain), ("--load", args.load),
                                            ("--continue", args.resume), ("--watch", args.watch),
                                            ("--context-log", args.context_log)) if given]
        if refused:
            print(f"storyteller: a served game (--guest) does not take {', '.join(refused)}",
                  file=sys.stderr)
            return 2
    session = None
    save_path = getattr(args, "load", None)
    if getattr(args, "resume", False):
        save_path = latest_autosave()
        if save_path is None:
            print("storyteller: there is no autosave to continue yet", file=sys.stderr)
            return 2
    if save_path is not None:
        try:
            session = Session.load(save_path)
        except GameFileError as exc:
            for p in exc.problems:
                print(p.format(), file=sys.stderr)
            if Path(save_path).exists():
                print("The save was left as it is.", file=sys.stderr)
            return 1
        for note in session.load_notes:
            print(f"note: {note}", file=sys.stderr)
    if not plain:
        return run_tui(args, quest_name, session)
    if session is not None:
        quest = session.quest
    else:
        quest, code = _open_quest(quest_name, "The quest cannot be played until these are fixed.")
        if quest is None:
            return code
    loaded = _load_settings()
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


def run_tui(args, quest_name: str | None, session=None) -> int:
    """Start the Textual app; the model loads in the background once it is up."""
    from game.tui.app import make_app

    path = None
    if quest_name is not None:
        path = _resolve_quest(quest_name)
        if path is None:
            print(f"storyteller: no quest named '{quest_name}'; see `storyteller quests`", file=sys.stderr)
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
    app.run()
    return 0


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
        print(f"storyteller: unknown personality '{personality}'; known: "
              f"{', '.join(personalities)}", file=sys.stderr)
        return None
    return make_turn_narrator(settings, personalities, quest=quest, model=getattr(args, "model", None),
                              device=getattr(args, "device", None), dtype=getattr(args, "dtype", None),
                              seed=getattr(args, "seed", None), personality=personality,
                              precision=getattr(args, "precision", None),
                              context_log=getattr(args, "context_log", None))


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
    print("(The Storyteller Spirit is waking...)", file=sys.stderr)
    service.load()
    if service.status != "ready":
        print(f"storyteller: the Spirit is silent: {service.reason}", file=sys.stderr)
        return 1

    sys.stdout.write(inert(args.prompt))
    sys.stdout.flush()
    try:
        for chunk in service.stream(args.prompt, sampling, seed=narrator.seed, stop_strings=()):
            sys.stdout.write(inert(chunk))
            sys.stdout.flush()
    except Exception as exc:  # the model failed mid-story: say so in one line
        print(f"\nstoryteller: the Spirit lost its words: {str(exc).splitlines()[0] if str(exc) else exc!r}",
              file=sys.stderr)
        return 1
    sys.stdout.write("\n")
    return 0


def cmd_model(args) -> int:
    from game.narrator import hub

    if args.model_command == "pull":
        return hub.pull(args.name, out=sys.stderr)
    models = hub.cached_models()
    if not models:
        print("No models in the Hugging Face cache. Download one with: storyteller model pull")
        return 0
    for m in models:
        print(f"{m.repo_id}  {hub.format_size(m.size)}  {m.path}")
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
    print(f"Wrote {shown}\nCheck it:  storyteller validate {shown}\nPlay it:   storyteller play {shown} --plain --watch")
    return 0


def cmd_serve(args) -> int:
    from game.serve import run

    if args.max_players is not None and args.max_players < 1:
        print("storyteller serve: --max-players must be 1 or more", file=sys.stderr)
        return 2
    play_options = {o for action in _subparser(build_parser(), "play")._actions for o in action.option_strings}
    if args.server and "--server" not in play_options:
        print("storyteller serve: this version of the game has no server narrator; "
              "leave out --server", file=sys.stderr)
        return 2
    return run(args)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def cmd_map(args) -> int:
    from game.quest_map import render_map

    quest, code = _open_quest(args.quest)
    if quest is None:
        return code
    sys.stdout.write(render_map(quest, args.format))
    return 0
