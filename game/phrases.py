"""The game's own words in the story (not the quest's): per quest language.

A Russian quest should not say "You now have ковш". The engine, the rules and
the plain front end take their sentences from here, by the quest's `language` and
its form of `address` (formal, the default, or informal: «ты» in Russian);
unknown languages fall back to English. Built-in commands are understood in
every language listed, whatever the quest's language.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    "en": {
        "gained": "You now have {item}.",
        "lost": "You no longer have {item}.",
        "won": "You won.",
        "lost_game": "You lost.",
        "carry_nothing": "You carry nothing.",
        "carry": "You carry:",
        "no_option": "There is no option {number}: {hint}.",
        "pick_range": "pick 1 to {count}",
        "no_options": "there are no numbered options here",
        "locked": "You can't do that right now.",
        "ended": "The quest has ended. Start again to play once more.",
        "unanswered": "Nothing in the quest answers that. (Try one of the options, or look around.)",
        "help": ("Type what you do in your own words, or the number of an option. "
                 "Commands: look (l), inventory (i), help (?), go <place> (n, s, e, w, ne, nw, se, sw, u, d), "
                 "examine (x) <thing>, take/drop/wear/read/use <thing>, put <thing> on <thing>, "
                 "wait (z), again (g), undo."),
        "by": "by {author}",
        "the_end": "THE END",
        "undone": "(You step back one turn.)",
        "undo_start": "(Nothing to undo: this is the start.)",
        "wait": "Time passes.",
        "again_nothing": "There is nothing to do again yet.",
        # a built-in command as the story records it ("> inventory")
        "cmd_look": "look", "cmd_inventory": "inventory", "cmd_wait": "wait",
        "no_exit": "You can't go that way.",
        "which": "Which do you mean, {things}?",
        "or": "or",
        "and": "and",
        "nothing_special": "You see nothing special about {thing}.",
        "dropped": "Dropped.",
        "taken": "Taken.",
        "already_have": "You already have that.",
        "here": "You can see {things} here.",
        "scored": "You scored {score} of {max_score} points.",
    },
    "ru": {
        "gained": "Теперь у вас есть: {item}.",
        "lost": "У вас больше нет: {item}.",
        "won": "Вы победили.",
        "lost_game": "Вы проиграли.",
        "carry_nothing": "У вас ничего нет.",
        "carry": "У вас с собой:",
        "no_option": "Варианта {number} нет: {hint}.",
        "pick_range": "выберите от 1 до {count}",
        "no_options": "здесь нет пронумерованных вариантов",
        "locked": "Сейчас этого сделать нельзя.",
        "ended": "Квест окончен. Начните заново, чтобы сыграть ещё раз.",
        "unanswered": "Квест на это не отвечает. (Выберите вариант или осмотритесь.)",
        "help": ("Пишите, что делаете, своими словами, или номер варианта. "
                 "Команды: осмотреться (о), инвентарь (и), помощь (?), отмена (undo)."),
        "by": "автор: {author}",
        "the_end": "КОНЕЦ",
        "undone": "(Вы вернулись на ход назад.)",
        "undo_start": "(Отменять нечего: это начало.)",
        "wait": "Проходит время.",
        "again_nothing": "Повторять пока нечего.",
        "cmd_look": "осмотреться", "cmd_inventory": "инвентарь", "cmd_wait": "ждать",
        "no_exit": "Туда не пройти.",
        "which": "Что именно: {things}?",
        "or": "или",
        "and": "и",
        "nothing_special": "Ничего особенного: {thing}.",
        "dropped": "Брошено.",
        "taken": "Взято.",
        "already_have": "Это уже у вас.",
        "here": "Здесь есть: {things}.",
        "scored": "Очки: {score} из {max_score}.",
    },
}

# The informal form of address ("ты" in Russian), for quests with `address: informal`:
# only the sentences that differ; the rest are the same as the formal ones.
INFORMAL: dict[str, dict[str, str]] = {
    "ru": {
        "gained": "Теперь у тебя есть: {item}.",
        "lost": "У тебя больше нет: {item}.",
        "won": "Победа!",
        "lost_game": "Ты проиграл.",
        "carry_nothing": "У тебя ничего нет.",
        "carry": "У тебя с собой:",
        "pick_range": "выбери от 1 до {count}",
        "ended": "Квест окончен. Начни заново, чтобы сыграть ещё раз.",
        "unanswered": "Квест на это не отвечает. (Выбери вариант или осмотрись.)",
        "help": ("Пиши, что делаешь, своими словами, или номер варианта. "
                 "Команды: осмотреться (о), инвентарь (и), помощь (?), отмена (undo)."),
        "undone": "(Шаг назад: ход отменён.)",
    },
}

# Built-in commands, in every language (the parser lower-cases input first).
COMMAND_WORDS: dict[str, str] = {
    "look": "look", "l": "look", "look around": "look",
    "inventory": "inventory", "inv": "inventory", "i": "inventory",
    "help": "help", "?": "help", "h": "help", "commands": "help",
    "осмотреться": "look", "осмотрись": "look", "смотреть": "look", "о": "look",
    "инвентарь": "inventory", "вещи": "inventory", "и": "inventory",
    "помощь": "help", "справка": "help", "команды": "help",
    "wait": "wait", "z": "wait", "again": "again", "g": "again",
    "ждать": "wait", "ждите": "wait", "ещё": "again", "еще": "again",
}
UNDO_WORDS = {"undo", "отмена", "отменить"}
QUIT_WORDS = {"quit", "exit", "q"}  # not "выйти": in a Russian quest it means "go out"


def phrase(language: str, key: str, address: str = "formal", **values) -> str:
    """One of the game's sentences in `language`, in the quest's form of `address`
    (formal or informal; languages with one form ignore it)."""
    lang = (language or "en").split("-")[0].lower()
    table = PHRASES.get(lang, PHRASES["en"])
    if address == "informal" and key in INFORMAL.get(lang, {}):
        return INFORMAL[lang][key].format(**values)
    return table.get(key, PHRASES["en"][key]).format(**values)
