"""EncryptionScreen: no encryption, or LUKS2 with a passphrase typed twice (with a strength hint), and
TPM2 auto-unlock offered only when this machine has a TPM, with the PCR choice explained in one line each.

The screen fills the draft's ``encrypt``, ``passphrase``, ``tpm2`` and ``tpm2_pcrs``; the plan's own
validation (``Encryption`` in backend/plan.py) runs again at the review screen.
"""

from __future__ import annotations

import math
import string

from pydantic import SecretStr
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, RadioSet, Static

from ..backend.plan import MIN_PASSPHRASE
from ..backend.storage.tpm import tpm_present  # the engine's own probe: the TUI and the engine agree
from ..draft import TPM2_RECOMMENDED_PCRS, PlanDraft
from ..widgets.choice_set import ChoiceSet
from ..widgets.secret_input import SecretInput
from ..widgets.status_line import StatusLine
from .wizard import WizardScreen

ENCRYPT_CHOICES = (("none", "No encryption"), ("luks", "LUKS2 with a passphrase"))
# value -> (label, tpm2, pcrs). One line each, so the choice is explained where it is made.
UNLOCK_CHOICES: dict[str, tuple[str, bool, tuple[int, ...]]] = {
    "passphrase": ("Passphrase at every boot (no TPM)", False, ()),
    "pcr7": ("TPM2, PCR 7: only while Secure Boot state is unchanged (recommended)", True, TPM2_RECOMMENDED_PCRS),
    "nopcr": ("TPM2, no PCRs: unlocks on any boot of this machine (weakest)", True, ()),
}

# Character classes and how many symbols each adds to a guesser's alphabet.
_CLASSES: tuple[tuple[str, str, int], ...] = (
    ("lower-case", string.ascii_lowercase, 26),
    ("upper-case", string.ascii_uppercase, 26),
    ("digits", string.digits, 10),
    ("symbols", string.punctuation + " ", 33),
)


def passphrase_strength(text: str) -> str:
    """A hint in words from the length and the kinds of characters (never the text itself).

    A rough upper bound of a brute-force search: length x log2(alphabet). It cannot see words or
    patterns, so it says "about" and errs on the side of calling a passphrase weaker."""
    if not text:
        return f"Type a passphrase of at least {MIN_PASSPHRASE} characters."
    kinds = [name for name, chars, _ in _CLASSES if any(c in chars for c in text)]
    alphabet = sum(size for _name, chars, size in _CLASSES if any(c in chars for c in text))
    if any(not any(c in chars for _n, chars, _s in _CLASSES) for c in text):
        kinds.append("other")
        alphabet += 100
    bits = len(text) * math.log2(max(alphabet, 2))
    if len(text) < MIN_PASSPHRASE:
        verdict = f"too short (at least {MIN_PASSPHRASE} characters)"
    elif bits < 50:
        verdict = "weak"
    elif bits < 70:
        verdict = "fair"
    elif bits < 90:
        verdict = "good"
    else:
        verdict = "strong"
    noun = "character" if len(text) == 1 else "characters"
    return f"Strength: {verdict} ({len(text)} {noun}; {', '.join(kinds)})"


def check_passphrases(first: str, again: str) -> str | None:
    """Why these two entries cannot be the passphrase, in words; None when they can."""
    if len(first) < MIN_PASSPHRASE:
        return f"The passphrase is too short: use at least {MIN_PASSPHRASE} characters."
    if first != again:
        return "The two passphrases differ: type the same passphrase in both fields."
    return None


def boot_keyboard_note(keymap: str) -> str:
    """Why a passphrase typed on a non-US keyboard may not unlock the disk at boot (README: the prompt's layout
    is the initramfs's, which the install does not change)."""
    return (f"This keyboard is {keymap}, but at boot the passphrase is asked with the layout of the image's "
            "initramfs, US unless the image put another in. Choose characters that are on the same keys in both "
            "layouts (or type it as a US keyboard would).")


class EncryptionScreen(WizardScreen[bool]):
    """Fills the draft's encryption; dismisses True, or None for back. ``tpm`` replaces the look for a
    TPM on this machine (tests, snapshots)."""

    HEADING = "Encryption"
    HELP = ("Encryption: LUKS2 encrypts root1, root2 and var (the boot partition stays readable). The "
            "passphrase unlocks them at boot; keep it safe, a lost passphrase means lost data. With a TPM2 "
            "the disk can unlock itself: PCR 7 ties that to the Secure Boot state (recommended), no PCRs "
            "unlocks on any boot of this machine. The passphrase always stays as a fallback, and a recovery "
            "key is created and shown once during the install.")

    def __init__(self, draft: PlanDraft, *, tpm: bool | None = None) -> None:
        super().__init__()
        self.draft = draft
        self.tpm = tpm_present() if tpm is None else tpm

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(classes="body"):
            with Horizontal(classes="row"):
                yield Static("Disk encryption", classes="row-label")
                yield ChoiceSet(ENCRYPT_CHOICES, picked="luks" if self.draft.encrypt else "none", id="encrypt")
            with Horizontal(classes="row"):
                yield Static("Passphrase", classes="row-label")
                yield SecretInput(placeholder=f"at least {MIN_PASSPHRASE} characters", id="passphrase")
            with Horizontal(classes="row"):
                yield Static("Again", classes="row-label")
                yield SecretInput(placeholder="the same passphrase again", id="passphrase-again")
            yield StatusLine(id="strength")
            if self.draft.console_keymap not in ("", "us"):
                yield Static(boot_keyboard_note(self.draft.console_keymap), id="boot-keyboard", classes="notice")
            if self.tpm:
                # Full width: each choice explains itself in one line.
                yield Static("Unlock at boot (this machine has a TPM 2.0):", classes="field-label")
                yield ChoiceSet(((key, label) for key, (label, _tpm2, _pcrs) in UNLOCK_CHOICES.items()),
                                picked=self._unlock_choice(), id="unlock")
            else:
                yield Static("No TPM 2.0 on this machine: the passphrase is asked at every boot.", id="no-tpm")

    def _unlock_choice(self) -> str:
        if not self.draft.tpm2:
            return "passphrase"
        return "pcr7" if tuple(self.draft.tpm2_pcrs) == TPM2_RECOMMENDED_PCRS else "nopcr"

    def on_mount(self) -> None:
        if self.draft.passphrase is not None:
            secret = self.draft.passphrase.get_secret_value()
            self.query_one("#passphrase", Input).value = secret
            self.query_one("#passphrase-again", Input).value = secret
        self._enable(self.encrypting)
        self.query_one("#encrypt", ChoiceSet).focus()

    # -- state ------------------------------------------------------------------------------------

    @property
    def encrypting(self) -> bool:
        return self.query_one("#encrypt", ChoiceSet).picked == "luks"

    def _enable(self, on: bool) -> None:
        """The passphrase and unlock fields only take part when LUKS2 is chosen."""
        for widget in self.query("#passphrase, #passphrase-again, #unlock"):
            widget.disabled = not on
        self._show_strength()

    def _show_strength(self) -> None:
        hint = self.query_one("#strength", StatusLine)
        hint.say(passphrase_strength(self.query_one("#passphrase", Input).value) if self.encrypting else "")

    @on(RadioSet.Changed, "#encrypt")
    def _encrypt_changed(self) -> None:
        self._enable(self.encrypting)
        self.say("")

    @on(Input.Changed, "#passphrase")
    def _typed(self) -> None:
        self._show_strength()

    # -- leaving ----------------------------------------------------------------------------------

    def save(self) -> bool | None:
        """Copy the choice into the draft; None (and the reason in words) when the passphrase is refused."""
        if not self.encrypting:
            self.draft.encrypt, self.draft.passphrase, self.draft.tpm2 = False, None, False
            return True
        first = self.query_one("#passphrase", Input).value
        again = self.query_one("#passphrase-again", Input)
        problem = check_passphrases(first, again.value)
        if problem:
            self.say(problem, "error")
            again.value = ""
            self.query_one("#passphrase", Input).focus()
            return None
        unlock = (self.query_one("#unlock", ChoiceSet).picked if self.tpm else None) or "passphrase"
        _label, tpm2, pcrs = UNLOCK_CHOICES.get(unlock, UNLOCK_CHOICES["passphrase"])
        self.draft.encrypt = True
        self.draft.passphrase = SecretStr(first)
        self.draft.tpm2 = tpm2
        self.draft.tpm2_pcrs = pcrs if tpm2 else TPM2_RECOMMENDED_PCRS
        self.say("")
        return True
