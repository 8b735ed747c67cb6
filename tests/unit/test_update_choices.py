"""The update's choices, over fake installed systems (pure logic): which slot it keeps, whether an update is
needed, refused, or already waiting; and the per-slot state files it reads them from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nbc_tui.backend.boot.entries import BootEntry, EntryState
from nbc_tui.backend.boot.menu import BootMenu, MenuItem
from nbc_tui.backend.errors import InputError
from nbc_tui.backend.installed import InstalledSystem
from nbc_tui.backend.operations.update import UpdateRequest
from nbc_tui.backend.operations.update_image import NO_UPDATE_NEEDED, ChosenImage, judge
from nbc_tui.backend.system.slots import Slot
from nbc_tui.backend.system.state import (
    SlotRecord,
    SystemConfig,
    forget_slot,
    read_slot_record,
    slot_config,
    write_slot_record,
)

V1, V2, V3 = ("sha256:" + d * 64 for d in "123")


def entry(slot: Slot) -> BootEntry:
    return BootEntry(title=f"OS {slot.value}", linux=f"{slot.value}/vmlinuz-6.1", initrd=f"{slot.value}/initrd",
                     options=("root=UUID=x",), slot=slot)


def config(digest: str = V1) -> SystemConfig:
    return SystemConfig(image_ref="oci:/images:v", image_digest=digest, device="/dev/vda",
                        install_date="2026-12-05T10:00:00+00:00", kernel_args=[], bootloader_type="systemd-boot",
                        filesystem_type="btrfs")


def system(tmp_path: Path, items: list[tuple[Slot, EntryState]], *, booted: Slot | None,
           records: dict[Slot, str] | None = None) -> InstalledSystem:
    for slot, digest in (records or {}).items():
        write_slot_record(tmp_path, SlotRecord(slot=slot.value, image_ref="oci:/images:v", image_digest=digest,
                                               written="2026-12-05T10:00:00+00:00"), config(digest))
    menu = BootMenu("systemd-boot", tuple(MenuItem(entry(s), st, 0 if st is EntryState.BAD else None)
                                          for s, st in items))
    return InstalledSystem(disk=Path("/dev/vda"), partitions={}, config=config(), shared_root=tmp_path,
                           esp=None, esp_uuid="", var_uuid="", menu=menu, root_uuids={},  # type: ignore[arg-type]
                           booted=booted)


@dataclass
class FakeSource:
    manifest_digest: str
    index_digest: str | None = None


def image(digest: str) -> ChosenImage:
    return ChosenImage("oci:/images:v", FakeSource(digest), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("items", "booted", "kept"), [
    ([(Slot.A, EntryState.GOOD), (Slot.B, EntryState.GOOD)], Slot.B, Slot.B),  # running: the booted one
    ([(Slot.A, EntryState.GOOD), (Slot.B, EntryState.GOOD)], None, Slot.A),  # another disk: its default
    ([(Slot.B, EntryState.TRIAL), (Slot.A, EntryState.GOOD)], None, Slot.A),  # not the untried update
    ([(Slot.A, EntryState.GOOD), (Slot.B, EntryState.BAD)], None, Slot.A),  # not the one given up on
    ([(Slot.B, EntryState.TRIAL)], None, None),  # nothing good: nothing to keep
])
def test_the_slot_an_update_keeps(tmp_path: Path, items: list[tuple[Slot, EntryState]], booted: Slot | None,
                                  kept: Slot | None) -> None:
    assert system(tmp_path, items, booted=booted).keeper is kept


def test_no_update_is_needed_when_the_kept_slot_runs_the_image(tmp_path: Path) -> None:
    s = system(tmp_path, [(Slot.A, EntryState.GOOD)], booted=Slot.A, records={Slot.A: V1})
    verdict = judge(s, Slot.A, image(V1))
    assert (verdict.needed, verdict.message, verdict.current_digest) == (False, NO_UPDATE_NEEDED, V1)
    assert judge(s, Slot.A, image(V2)).needed


def test_without_a_record_config_json_names_what_runs(tmp_path: Path) -> None:
    """A disk nbc wrote has no per-slot records."""
    s = system(tmp_path, [(Slot.A, EntryState.GOOD)], booted=Slot.A)
    assert not judge(s, Slot.A, image(V1)).needed


def test_a_multi_platform_image_matches_by_its_index_digest(tmp_path: Path) -> None:
    s = system(tmp_path, [(Slot.A, EntryState.GOOD)], booted=Slot.A, records={Slot.A: V2})
    chosen = ChosenImage("oci:/images:v", FakeSource(V1, index_digest=V2), None)  # type: ignore[arg-type]
    assert not judge(s, Slot.A, chosen).needed


def test_an_update_waiting_in_the_other_slot_is_not_written_again(tmp_path: Path) -> None:
    s = system(tmp_path, [(Slot.B, EntryState.TRIAL), (Slot.A, EntryState.GOOD)], booted=Slot.A,
               records={Slot.A: V1, Slot.B: V2})
    verdict = judge(s, Slot.A, image(V2))
    assert not verdict.needed and not verdict.refused and verdict.waiting and "reboot" in verdict.message


def test_a_rolled_back_to_slot_that_boots_next_is_not_written_again(tmp_path: Path) -> None:
    """A rollback on the running system makes the other slot the default; until the reboot, updating it to the
    image it holds would only write it again. Once the system runs the other one, going back to it is an update."""
    s = system(tmp_path, [(Slot.A, EntryState.GOOD), (Slot.B, EntryState.GOOD)], booted=Slot.B,
               records={Slot.A: V1, Slot.B: V2})
    verdict = judge(s, Slot.B, image(V1))
    assert not verdict.needed and not verdict.refused and verdict.waiting and "boots next: reboot" in verdict.message
    s = system(tmp_path, [(Slot.B, EntryState.GOOD), (Slot.A, EntryState.GOOD)], booted=Slot.B)
    assert judge(s, Slot.B, image(V1)).needed


def test_an_image_that_failed_to_boot_is_refused(tmp_path: Path) -> None:
    s = system(tmp_path, [(Slot.A, EntryState.GOOD), (Slot.B, EntryState.BAD)], booted=Slot.A,
               records={Slot.A: V1, Slot.B: V2})
    verdict = judge(s, Slot.A, image(V2))
    assert verdict.refused and "failed to boot from slot B" in verdict.message
    assert judge(s, Slot.A, image("sha256:" + "3" * 64)).needed  # another image is welcome


def test_no_update_while_the_running_slot_is_on_trial(tmp_path: Path) -> None:
    """B runs an update not yet marked good (its health check fails, say): the update's target would be A, the
    last slot known to boot. Refused (the update needs --force), with what to do; once B is good, allowed."""
    s = system(tmp_path, [(Slot.B, EntryState.TRIAL), (Slot.A, EntryState.GOOD)], booted=Slot.B,
               records={Slot.A: V1, Slot.B: V2})
    verdict = judge(s, Slot.B, image(V3))
    assert (verdict.needed, verdict.refused) == (False, True)
    assert "Slot B runs on trial" in verdict.message and "overwrite slot A, the last slot known to boot" in (
        verdict.message)
    assert "boot-complete.target" in verdict.hint and "--force" in verdict.hint
    assert judge(s, Slot.B, image(V2)).message == NO_UPDATE_NEEDED  # the image it runs: nothing to do anyway
    good = system(tmp_path, [(Slot.B, EntryState.GOOD), (Slot.A, EntryState.GOOD)], booted=Slot.B)
    assert judge(good, Slot.B, image(V3)).needed


def test_a_stray_counted_entry_beside_a_good_one_is_no_fall_back(tmp_path: Path) -> None:
    """nbc's own bootc.conf for A beside a counted entry of A that ran out of tries (a second loader entry for
    the slot): the slot is good by its first entry, and status says no fall back (it named the bad slot)."""
    import contextlib
    import dataclasses

    from nbc_tui.backend.engine import StepContext
    from nbc_tui.backend.events import Event
    from nbc_tui.backend.operations.status import _status
    from nbc_tui.backend.runner import RunContext

    s = dataclasses.replace(system(tmp_path, [(Slot.A, EntryState.GOOD), (Slot.A, EntryState.BAD)], booted=None),
                            partitions={"root1": Path("/dev/vda2"), "root2": Path("/dev/vda3")})
    events: list[Event] = []
    st = _status(s, StepContext(RunContext(dry_run=True), events.append, contextlib.ExitStack()), check=False)
    assert [x.state.value for x in st.slots] == ["good", "empty"] and not st.fell_back


def test_slot_records_are_written_read_and_forgotten(tmp_path: Path) -> None:
    record = SlotRecord(slot="B", image_ref="oci:/images:v2", image_digest=V2, kernel="6.1",
                        kernel_args=["quiet"], written="2026-12-05T10:00:00+00:00", operation="update")
    write_slot_record(tmp_path, record, config(V2))
    assert read_slot_record(tmp_path, Slot.B) == record
    assert slot_config(tmp_path, Slot.B) == config(V2)
    assert read_slot_record(tmp_path, Slot.A) is None
    forget_slot(tmp_path, Slot.B)
    assert read_slot_record(tmp_path, Slot.B) is None and slot_config(tmp_path, Slot.B) is None
    forget_slot(tmp_path, Slot.B)  # nothing there: fine


def test_an_updates_new_kernel_arguments_are_checked_as_the_installs_are() -> None:
    for bad, why in (("", "empty"), ("a b", "space outside double quotes"), ('x="a', "unpaired double quote")):
        with pytest.raises(InputError, match=why):
            UpdateRequest(extra_kernel_args=("quiet", bad))
    assert UpdateRequest(extra_kernel_args=('dyndbg="file a.c +p"',)).extra_kernel_args == ('dyndbg="file a.c +p"',)
