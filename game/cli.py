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

    validate = sub.add_parser("validate", help="check quest files and folders for mistakes")
    validate.add_argument("paths", nargs="+", metavar="PATH")

    sub.add_parser("quests", help="list the bundled quests and your own")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "quests":
            return cmd_quests(args)
        if args.command == "play":
            return cmd_play(args)
        parser.print_help()
        return 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def cmd_validate(args) -> int:
    from game.quest_loader import check_quest, resolve_quest_path

    errors = warnings = 0
    for raw in args.paths:
        path = Path(raw)
        quest, problems = check_quest(path)
        for p in problems:
            print(p.format())
        errors += sum(p.severity == "error" for p in problems)
        warnings += sum(p.severity == "warning" for p in problems)
        if quest is not None and not any(p.severity == "error" for p in problems):
            print(f"{display_path(resolve_quest_path(path))}: ok: \"{quest.title}\" ({quest.id}): "
                  f"{len(quest.scenes)} scenes, {len(quest.endings)} endings, "
                  f"{len(quest.items)} items, {len(quest.flags)} flags")
    if errors or warnings:
        print(f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return 1 if errors else 0


def cmd_quests(args) -> int:
    from game import locations
    from game.catalog import all_quests

    entries = all_quests()
    if not entries:
        print("No quests found.")
    for e in entries:
        status = "" if e.playable else "  [has errors: run storyteller validate]"
        print(f"{e.id}  ({e.origin}, {e.language})  {e.title} by {e.author}{status}")
        if e.summary:
            print(f"    {e.summary}")
        print(f"    {display_path(e.path)}")
    print(f"\nYour own quests go in: {locations.user_quests_dir()}")
    return 0


def _resolve_quest(name: str | None) -> Path | None:
    from game.catalog import all_quests, find_quest

    if name is None:
        entries = [e for e in all_quests() if e.playable]
        return entries[0].path if entries else None
    return find_quest(name)


def cmd_play(args) -> int:
    from game.engine import Engine
    from game.plain import PlainGame
    from game.quest_loader import load_quest

    path = _resolve_quest(args.quest)
    if path is None:
        print(f"storyteller: no quest named '{args.quest}'; see `storyteller quests`", file=sys.stderr)
        return 2
    try:
        quest = load_quest(path)
    except GameFileError as exc:
        for p in exc.problems:
            print(p.format(), file=sys.stderr)
        print("The quest cannot be played until these are fixed.", file=sys.stderr)
        return 1
    engine = Engine(quest, seed=args.seed)
    return PlainGame(engine).run()
