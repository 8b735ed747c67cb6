"""The ESP's boot menu, whatever the loader: read it (which slot each entry boots, on trial or not, in the
order the loader tries them) and change it in the orders that survive a crash at any point.

- :func:`write_menu`: good entries only (an install): ``primary`` boots by default.
- :func:`make_default`: the other slot's entry becomes the default one, both good (a rollback), with both
  slots in the menu at every moment.
- :func:`retire_slot`: before a slot is written, every entry that boots it goes, so a half-written slot is
  never offered.
- :func:`start_trial`: once the slot is written, its entry goes on trial (systemd-boot: a counted name; GRUB:
  the counter in grubenv, written before the grub.cfg that reads it) with the running slot's entry as the
  previous one. The trial entry is written last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..storage.esp import EspFiles
from ..system.slots import Slot
from . import grubenv
from .entries import BootEntry, BootloaderKind, EntryState
from .grub import GRUB_DIR, parse_grub_cfg, render_grub_cfg
from .systemd_boot import (
    ENTRIES_DIR,
    ENTRY_NAME,
    LOADER_CONF,
    PREVIOUS_ENTRY_NAME,
    counter,
    parse_entry,
    render_entry,
    trial_name,
    without_stale_default,
)

NEXT_ENTRY_NAME = "bootc-next.conf"
"""A rollback's new default on its way to bootc.conf (never there after a rollback that finished)."""
SlotOf = Callable[[BootEntry], Slot | None]
"""Which slot an entry boots (see entries.slot_by_paths)."""


@dataclass(frozen=True)
class MenuItem:
    entry: BootEntry
    state: EntryState
    tries_left: int | None = None
    """On trial: the boots it has left before the loader gives up on it."""
    key: str = ""
    """Where it lives: its entry file (systemd-boot) or its position in grub.cfg."""


@dataclass(frozen=True)
class BootMenu:
    kind: BootloaderKind
    items: tuple[MenuItem, ...]
    """In the order the loader tries them: the first one that is not bad boots by default."""

    @property
    def default(self) -> MenuItem | None:
        return next((i for i in self.items if i.state is not EntryState.BAD), None)

    def item(self, slot: Slot) -> MenuItem | None:
        return next((i for i in self.items if i.entry.slot is slot), None)


# -- reading ------------------------------------------------------------------------------------------

def read_menu(esp: EspFiles, kind: BootloaderKind, slot_of: SlotOf) -> BootMenu:
    if kind == "systemd-boot":
        return BootMenu(kind, tuple(_systemd_boot_items(esp, slot_of)))
    return BootMenu(kind, tuple(_grub_items(esp, slot_of)))


def _systemd_boot_items(esp: EspFiles, slot_of: SlotOf) -> list[MenuItem]:
    items = []
    for path in esp.files():
        folder, _, name = path.rpartition("/")
        if folder.casefold() != ENTRIES_DIR or not name.endswith(".conf"):
            continue
        entry = parse_entry(esp.read(path).decode(errors="replace"))
        if entry is None:
            continue
        entry = _with_slot(entry, slot_of)
        count = counter(name)
        if count is None:
            items.append(MenuItem(entry, EntryState.GOOD, key=name))
        else:
            state = EntryState.TRIAL if count.left > 0 else EntryState.BAD
            items.append(MenuItem(entry, state, count.left, key=name))
    # systemd-boot's order here: loader.conf's default (bootc.conf) first, then entries on trial (a counted
    # name sorts before bootc-previous.conf), then the other good ones, entries out of tries last.
    rank = {EntryState.TRIAL: 1, EntryState.GOOD: 2, EntryState.BAD: 3}
    return sorted(items, key=lambda i: (0 if i.key == ENTRY_NAME else rank[i.state], i.key))


def _grub_items(esp: EspFiles, slot_of: SlotOf) -> list[MenuItem]:
    cfg, env_path = _grub_files(esp)
    if not esp.exists(cfg):
        return []
    entries = [_with_slot(e, slot_of) for e in parse_grub_cfg(esp.read(cfg).decode(errors="replace"))]
    env = grubenv.decode(esp.read(env_path)) if esp.exists(env_path) else {}
    trial, tries = env.get(grubenv.TRIAL_SLOT), env.get(grubenv.TRIES, "")
    items = []
    for index, entry in enumerate(entries):
        # The header counts only the first entry, and only while grubenv names its slot.
        on_trial = index == 0 and len(entries) > 1 and entry.slot is not None and entry.slot.value == trial
        if on_trial and tries.isdigit():
            left = int(tries)
            items.append(MenuItem(entry, EntryState.TRIAL if left else EntryState.BAD, left, key=str(index)))
        else:
            items.append(MenuItem(entry, EntryState.GOOD, key=str(index)))
    return sorted(items, key=lambda i: i.state is EntryState.BAD)  # out of tries: GRUB boots the next one


def _with_slot(entry: BootEntry, slot_of: SlotOf) -> BootEntry:
    return replace(entry, slot=slot_of(entry))


# -- writing ------------------------------------------------------------------------------------------

def write_menu(esp: EspFiles, kind: BootloaderKind, primary: BootEntry, previous: BootEntry | None = None) -> None:
    """Good entries only: ``primary`` boots by default, ``previous`` is the one to go back to."""
    if kind == "systemd-boot":
        esp.put_text(render_entry(primary), f"{ENTRIES_DIR}/{ENTRY_NAME}")
        if previous is not None:
            esp.put_text(render_entry(previous), f"{ENTRIES_DIR}/{PREVIOUS_ENTRY_NAME}")
        keep = {ENTRY_NAME, *([PREVIOUS_ENTRY_NAME] if previous is not None else [])}
        _remove_entries(esp, keep=keep)
        return
    _put_grub_cfg(esp, [primary, *([previous] if previous is not None else [])])
    _clear_grubenv(esp)


def make_default(esp: EspFiles, kind: BootloaderKind, primary: BootEntry, previous: BootEntry) -> None:
    """``primary`` boots by default from now on and ``previous`` is the one to go back to, both good. A crash at
    any point leaves a menu that offers both (systemd-boot: the new default is written under a name of its
    own first and renamed into place last; GRUB: one file, replaced by a rename, before the counter goes: the
    header counts only a first entry that grubenv names, so a stale counter is harmless under the new file,
    while an entry on trial left first without its counter would boot by default untried)."""
    if kind == "systemd-boot":
        esp.put_text(render_entry(primary), f"{ENTRIES_DIR}/{NEXT_ENTRY_NAME}")
        esp.put_text(render_entry(previous), f"{ENTRIES_DIR}/{PREVIOUS_ENTRY_NAME}")
        _remove_entries(esp, keep={NEXT_ENTRY_NAME, PREVIOUS_ENTRY_NAME})
        esp.rename(f"{ENTRIES_DIR}/{NEXT_ENTRY_NAME}", f"{ENTRIES_DIR}/{ENTRY_NAME}")
        return
    _put_grub_cfg(esp, [primary, previous])
    _clear_grubenv(esp)


def retire_slot(esp: EspFiles, menu: BootMenu, slot: Slot) -> None:
    """Remove every entry that boots ``slot`` (the others stay as they are, all good)."""
    if menu.kind == "systemd-boot":
        for item in menu.items:
            if item.entry.slot is slot:
                esp.remove(f"{ENTRIES_DIR}/{item.key}")
        return
    others = [i.entry for i in menu.items if i.entry.slot is not slot]
    if others:
        # The GRUB entries left become plain good ones; the trial header, if any, no longer applies. The file
        # first, the counter after (see make_default).
        _put_grub_cfg(esp, others[:1])
        _clear_grubenv(esp)


def start_trial(esp: EspFiles, kind: BootloaderKind, trial: BootEntry, previous: BootEntry, tries: int) -> None:
    """``trial`` boots by default, up to ``tries`` times unless one of them reaches boot-complete.target;
    after that ``previous`` does."""
    if kind == "systemd-boot":
        _drop_stale_default(esp)
        esp.put_text(render_entry(previous), f"{ENTRIES_DIR}/{PREVIOUS_ENTRY_NAME}")
        _remove_entries(esp, keep={PREVIOUS_ENTRY_NAME})
        esp.put_text(render_entry(trial), f"{ENTRIES_DIR}/{trial_name(tries)}")
        return
    if trial.slot is None or previous.slot is None:
        raise ValueError("GRUB counts tries by slot: both entries need one")
    _write_grubenv(esp, {grubenv.TRIAL_SLOT: trial.slot.value, grubenv.TRIES: str(tries)})
    _put_grub_cfg(esp, [trial, previous])


def _drop_stale_default(esp: EspFiles) -> None:
    """An install by an older nbc-tui named ``default bootc.conf``, which systemd 258 and later match to the
    trial entry even with no tries left: gone before a trial starts."""
    if esp.exists(LOADER_CONF):
        fixed = without_stale_default(esp.read(LOADER_CONF).decode(errors="replace"))
        if fixed is not None:
            esp.put_text(fixed, LOADER_CONF)


def _remove_entries(esp: EspFiles, *, keep: set[str]) -> None:
    for path in esp.files():
        folder, _, name = path.rpartition("/")
        if folder.casefold() == ENTRIES_DIR and name.endswith(".conf") and name not in keep:
            esp.remove(path)


def _grub_files(esp: EspFiles) -> tuple[str, str]:
    """grub.cfg and grubenv on this ESP: in ``grub/``, or in ``grub2/`` where nbc wrote them there (its host's
    grub2-install made that folder, and the GRUB it installed reads ``$prefix`` = ``/grub2``). nbc's rule:
    ``grub/`` unless only ``grub2/`` has a grub.cfg."""
    folder = "grub2" if not esp.exists(f"{GRUB_DIR}/grub.cfg") and esp.exists("grub2/grub.cfg") else GRUB_DIR
    return f"{folder}/grub.cfg", f"{folder}/{grubenv.GRUBENV_NAME}"


def _put_grub_cfg(esp: EspFiles, entries: list[BootEntry]) -> None:
    esp.put_text(render_grub_cfg(entries), _grub_files(esp)[0])


def _write_grubenv(esp: EspFiles, variables: dict[str, str]) -> None:
    esp.put_text(grubenv.encode(variables).decode(), _grub_files(esp)[1])


def _clear_grubenv(esp: EspFiles) -> None:
    _write_grubenv(esp, {})
