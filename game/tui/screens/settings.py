"""Settings: the narrator's personality and sampling, the model and device.

Values are checked as they are applied (`Settings.with_changes`); a bad value
shows the allowed range and nothing is saved. Personality and sampling apply
from the next turn; model, device and dtype apply the next time the model
loads (the next launch). Saving writes the settings file atomically.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from game.i18n import N_, SETTINGS as LANGUAGES, _
from game.safe_text import inert
from game.sampling import RANGES, SAMPLING_KEYS
from game.settings import DEVICES, DTYPES, save_settings

LANGUAGE_NAMES = {"auto": N_("the quest's language"), "en": "English", "ru": "Русский"}


class SettingsScreen(ModalScreen):
    BINDINGS = [Binding("escape,f3", "dismiss", N_("Close"), id="close"),
                Binding("ctrl+s", "apply", N_("Save"), id="save-settings", priority=True)]

    def compose(self) -> ComposeResult:
        app = self.app
        settings, personalities = app.settings, app.personalities
        persona, sampling = settings.effective_sampling(personalities)
        # What the form shows at first: the values in force. A field left as shown keeps
        # the settings' own value (an override stays an override) when saved.
        self.first_personality = settings.active_personality(personalities).id
        self.shown_personality = self.first_personality
        self.first_values = {key: str(getattr(sampling, key)) for key in SAMPLING_KEYS}
        with Vertical(id="dialog", classes="wide"):
            yield Static(Text(_("Settings (Tab: next field, ctrl+s saves, Esc closes)"), style="bold"),
                         classes="dialog-title")
            with VerticalScroll(id="settings-form"):
                yield Label(_("Language of the game's own words"))
                yield Select([(_(LANGUAGE_NAMES[code]), code) for code in LANGUAGES],
                             value=settings.language, allow_blank=False, id="language")
                yield Label(_("Personality (applies from the next turn)"))
                # Text, not str: a player's personality file may contain "[...]"
                yield Select([(Text(inert(f"{p.name}: {p.description}")), pid)
                              for pid, p in personalities.items()],
                             value=settings.active_personality(personalities).id,
                             allow_blank=False, id="personality")
                yield Static(Text(inert(persona), style="italic"), id="persona-text")
                for key in SAMPLING_KEYS:
                    lo, hi, help_text = RANGES[key][1], RANGES[key][2], RANGES[key][3]
                    with Horizontal(classes="field"):
                        yield Label(f"{key} ({lo:g} to {hi:g})", classes="field-name")
                        yield Input(str(getattr(sampling, key)), id=f"s-{key}")
                    yield Static(help_text, classes="field-help", markup=False)
                if app.guest is None:  # a served game's model and device are the host's
                    yield Label(_("Model: hub id or model folder (applies at the next launch)"))
                    yield Static(Text(self.model_in_use()), id="model-in-use", classes="field-help")
                    yield Input(settings.model, id="model")
                    yield Label(_("Device and number format (apply at the next launch)"))
                    with Horizontal(classes="row"):
                        yield Select([(d, d) for d in DEVICES], value=settings.device, allow_blank=False,
                                     id="device")
                        yield Select([(d, d) for d in DTYPES], value=settings.dtype, allow_blank=False,
                                     id="dtype")
                yield Label(_("Seed (empty: a new story every time)"))
                yield Input("" if settings.seed is None else str(settings.seed), id="seed")
            yield Static(id="settings-error")
            with Horizontal(classes="buttons"):
                yield Button(_("Save"), id="save", variant="primary")
                yield Button(_("Cancel"), id="cancel")

    def on_mount(self) -> None:
        self.query_one("#language", Select).focus()  # the first field; Tab goes on from there

    def model_in_use(self) -> str:
        """The model this game runs now (the command line may have named another than the file)."""
        narrator = self.app.narrator
        if narrator is None:
            return _("In use now: none (the Spirit is turned off).")
        return _("In use now: {model} ({state}).").format(
            model=inert(str(getattr(narrator.service, "model_name", None)
                             or getattr(narrator.service, "name", "?"))),
            state={"ready": _("awake"), "loading": _("waking"), "silent": _("silent")}.get(
                self.app.spirit_status, self.app.spirit_status))

    @on(Select.Changed, "#personality")
    def personality_changed(self, event: Select.Changed) -> None:
        chosen = self.app.personalities.get(event.value)
        if chosen is None or event.value == self.shown_personality:
            return  # the form's own first value (posted on mount): the fields show the values in force
        self.shown_personality = event.value
        self.query_one("#persona-text", Static).update(Text(inert(chosen.persona), style="italic"))
        for key in SAMPLING_KEYS:
            self.query_one(f"#s-{key}", Input).value = str(getattr(chosen.sampling, key))

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss()

    @on(Button.Pressed, "#save")
    def action_apply(self) -> None:
        error = self.query_one("#settings-error", Static)
        try:
            settings = self.collect()
        except ValueError as exc:
            error.update(Text(str(exc), style="bold red"))
            return
        try:
            save_settings(settings)
        except OSError as exc:
            error.update(Text(_("Could not write the settings file: {reason}").format(reason=exc.strerror or exc),
                              style="bold red"))
            return
        restart = (settings.model, settings.device, settings.dtype) != \
                  (self.app.settings.model, self.app.settings.device, self.app.settings.dtype)
        self.app.apply_settings(settings)
        self.app.notify(_("Settings saved.") + (" " + _("Model and device apply at the next launch.")
                                                 if restart else ""))
        self.dismiss()

    def collect(self):
        """The settings from the form; ValueError names the bad value and its range."""
        app = self.app
        personality = self.query_one("#personality", Select).value
        chosen = app.personalities[personality]
        same_voice = personality == self.first_personality
        overrides = dict(app.settings.sampling) if same_voice else {}
        for key in SAMPLING_KEYS:
            raw = self.query_one(f"#s-{key}", Input).value.strip()
            if same_voice and raw == self.first_values[key]:
                continue  # untouched: the setting stays as it was (an override or the voice's own)
            kind = RANGES[key][0]
            try:
                value = kind(float(raw)) if kind is int and float(raw).is_integer() else kind(raw)
            except (ValueError, OverflowError):
                raise ValueError(_("{key} must be a number from {low:g} to {high:g}").format(
                    key=key, low=RANGES[key][1], high=RANGES[key][2])) from None
            if value != getattr(chosen.sampling, key):
                overrides[key] = value
            else:
                overrides.pop(key, None)
        seed_text = self.query_one("#seed", Input).value.strip()
        if seed_text and not seed_text.isdigit():
            raise ValueError(_("seed must be empty or a whole number"))
        changes = dict(personality=personality, sampling=overrides,
                       language=self.query_one("#language", Select).value,
                       seed=int(seed_text) if seed_text else None)
        if app.guest is not None:  # only the narrator's taste is the player's (game.players.TASTE_KEYS)
            from game.players import guest_settings

            return guest_settings(app.host_settings, app.settings.with_changes(**changes))
        return app.settings.with_changes(
            model=self.query_one("#model", Input).value,
            device=self.query_one("#device", Select).value,
            dtype=self.query_one("#dtype", Select).value, **changes)
