"""Boot counting on a directory ESP: the entries' counted names, GRUB's counter in grubenv (exactly what
grub-editenv reads and writes) and the grub.cfg that runs it (grub-script-check), the menu read back in the
loader's order, the write order of an update at every crash point, and the script that marks a boot good."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nbc_tui.backend.boot import grubenv
from nbc_tui.backend.boot.entries import BootEntry, EntryState, slot_by_paths
from nbc_tui.backend.boot.grub import MAX_TRIES, parse_grub_cfg, render_grub_cfg
from nbc_tui.backend.boot.menu import BootMenu, make_default, read_menu, retire_slot, start_trial, write_menu
from nbc_tui.backend.boot.systemd_boot import counter, parse_entry, render_entry, trial_name
from nbc_tui.backend.storage.esp import MountedEsp
from nbc_tui.backend.system.boot_assessment import SCRIPT_TEXT, install_boot_assessment
from nbc_tui.backend.system.slots import Slot

A = BootEntry(title="Debian 12", linux="A/vmlinuz-6.1", initrd="A/initramfs-6.1.img",
              options=("root=UUID=aaaa", "ro", "quiet"), slot=Slot.A)
B = BootEntry(title="Debian 12.1", linux="B/vmlinuz-6.2", initrd="B/initramfs-6.2.img",
              options=("root=UUID=bbbb", "ro", "quiet"), slot=Slot.B)
ROOTS = {"aaaa": Slot.A, "bbbb": Slot.B}
KINDS = ["systemd-boot", "grub2"]


def slot_of(entry: BootEntry) -> Slot | None:
    return slot_by_paths(entry, ROOTS)


def menu(esp: MountedEsp, kind: str) -> BootMenu:
    return read_menu(esp, kind, slot_of)  # type: ignore[arg-type]


# -- names and formats --------------------------------------------------------------------------------

def test_counted_entry_names_follow_the_boot_loader_specification() -> None:
    assert trial_name(3) == "bootc+3.conf"
    assert counter("bootc+3.conf") == counter("bootc+3-0.conf")  # nothing done yet either way
    c = counter("bootc+1-2.conf")
    assert c is not None and (c.base, c.left, c.done) == ("bootc", 1, 2)
    assert counter("bootc.conf") is None and counter("bootc-previous.conf") is None
    with pytest.raises(ValueError):
        trial_name(0)


def test_an_entry_file_reads_back_as_written() -> None:
    assert parse_entry(render_entry(A)) == BootEntry(title=A.title, linux=A.linux, initrd=A.initrd,
                                                     options=A.options)
    assert parse_entry("title only\n") is None


@pytest.mark.skipif(shutil.which("grub-editenv") is None, reason="needs grub-common")
def test_grubenv_is_what_grub_editenv_writes_and_reads(tmp_path: Path) -> None:
    env = tmp_path / "grubenv"
    subprocess.run(["grub-editenv", str(env), "create"], check=True)
    subprocess.run(["grub-editenv", str(env), "set", "nbc_trial_slot=B", "nbc_tries=3"], check=True)
    ours = grubenv.encode({"nbc_trial_slot": "B", "nbc_tries": "3"})
    assert len(ours) == grubenv.SIZE and ours == env.read_bytes()
    assert grubenv.decode(env.read_bytes()) == {"nbc_trial_slot": "B", "nbc_tries": "3"}
    env.write_bytes(grubenv.encode({}))
    listed = subprocess.run(["grub-editenv", str(env), "list"], capture_output=True, text=True, check=True)
    assert listed.stdout == ""
    assert grubenv.decode(b"not an environment block") == {}
    with pytest.raises(ValueError):
        grubenv.encode({"x": "a b"})


@pytest.mark.skipif(shutil.which("grub-script-check") is None, reason="needs grub-common")
def test_the_counting_grub_cfg_is_valid_grub_script_and_reads_back(tmp_path: Path) -> None:
    text = render_grub_cfg([B, A.as_previous()])
    cfg = tmp_path / "grub.cfg"
    cfg.write_text(text)
    check = subprocess.run(["grub-script-check", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'if [ "${nbc_trial_slot}" = "B" ]; then' in text and "save_env nbc_tries" in text
    assert f'if [ "${{nbc_tries}}" = "{MAX_TRIES}" ]; then set nbc_tries={MAX_TRIES - 1}' in text
    assert [(e.title, e.linux, e.options) for e in parse_grub_cfg(text)] == [
        (B.title, B.linux, B.options), ("Debian 12 (Previous)", A.linux, A.options)]
    assert "load_env" not in render_grub_cfg([A])  # one entry: nothing to count


# -- the menu ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_an_install_writes_one_good_entry(tmp_path: Path, kind: str) -> None:
    esp = MountedEsp(tmp_path)
    write_menu(esp, kind, A)  # type: ignore[arg-type]
    m = menu(esp, kind)
    assert [(i.entry.slot, i.state) for i in m.items] == [(Slot.A, EntryState.GOOD)]
    assert m.default is not None and m.default.entry.slot is Slot.A


@pytest.mark.parametrize("kind", KINDS)
def test_an_update_puts_the_new_slot_on_trial_before_the_previous_one(tmp_path: Path, kind: str) -> None:
    esp = MountedEsp(tmp_path)
    write_menu(esp, kind, A)  # type: ignore[arg-type]
    retire_slot(esp, menu(esp, kind), Slot.B)
    start_trial(esp, kind, B, A.as_previous(), 3)  # type: ignore[arg-type]
    m = menu(esp, kind)
    assert [(i.entry.slot, i.state, i.tries_left) for i in m.items] == [
        (Slot.B, EntryState.TRIAL, 3), (Slot.A, EntryState.GOOD, None)]
    assert m.items[1].entry.title == "Debian 12 (Previous)"
    if kind == "systemd-boot":
        assert sorted(os.listdir(tmp_path / "loader/entries")) == ["bootc+3.conf", "bootc-previous.conf"]
    else:
        assert grubenv.decode((tmp_path / "grub/grubenv").read_bytes()) == {"nbc_trial_slot": "B",
                                                                            "nbc_tries": "3"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_slot_out_of_tries_is_bad_and_the_previous_one_boots(tmp_path: Path, kind: str) -> None:
    esp = MountedEsp(tmp_path)
    start_trial(esp, kind, B, A.as_previous(), 2)  # type: ignore[arg-type]
    if kind == "systemd-boot":  # what systemd-boot does before each try
        os.rename(tmp_path / "loader/entries/bootc+2.conf", tmp_path / "loader/entries/bootc+0-2.conf")
    else:  # what the grub.cfg header does (save_env)
        (tmp_path / "grub/grubenv").write_bytes(grubenv.encode({"nbc_trial_slot": "B", "nbc_tries": "0"}))
    m = menu(esp, kind)
    assert m.default is not None and m.default.entry.slot is Slot.A
    bad = m.item(Slot.B)
    assert bad is not None and (bad.state, bad.tries_left) == (EntryState.BAD, 0)


class CrashingEsp(MountedEsp):
    """A directory ESP that stops (a power cut) after ``writes`` changes."""

    def __init__(self, root: Path, writes: int) -> None:
        super().__init__(root)
        self.left = writes

    def _tick(self) -> None:
        if self.left == 0:
            raise SystemExit("power cut")
        self.left -= 1

    def put_text(self, text: str, dest: str) -> None:
        self._tick()
        super().put_text(text, dest)

    def remove(self, path: str) -> None:
        self._tick()
        super().remove(path)

    def rename(self, src: str, dest: str) -> None:
        self._tick()
        super().rename(src, dest)


@pytest.mark.parametrize("kind", KINDS)
def test_at_every_crash_point_of_an_update_a_written_slot_or_the_running_one_boots(tmp_path: Path,
                                                                                   kind: str) -> None:
    """B holds an older image and is good (a second update). Retiring B's entry comes first, B is then
    rewritten (here: nothing on the ESP), its trial entry last: a cut anywhere boots A, or the new B."""
    for writes in range(12):
        root = tmp_path / f"cut-{writes}"
        MountedEsp(root).mkdir("loader/entries")
        write_menu(MountedEsp(root), kind, A, B.as_previous())  # type: ignore[arg-type]
        esp = CrashingEsp(root, writes)
        retired = False
        try:
            retire_slot(esp, menu(esp, kind), Slot.B)
            retired = True
            start_trial(esp, kind, B, A.as_previous(), 3)  # type: ignore[arg-type]
            finished = True
        except SystemExit:
            finished = False
        m = menu(MountedEsp(root), kind)
        default = m.default
        assert default is not None, f"nothing boots after {writes} writes"
        if finished:
            assert default.entry.slot is Slot.B and default.state is EntryState.TRIAL
        elif retired:
            assert default.entry.slot is Slot.A, f"a half-written slot B is offered after {writes} writes"
            assert all(i.entry.slot is Slot.A for i in m.items), m.items
        else:
            assert default.entry.slot is Slot.A


@pytest.mark.parametrize("kind", KINDS)
def test_at_every_crash_point_of_a_rollback_both_slots_stay_in_the_menu(tmp_path: Path, kind: str) -> None:
    """A boots by default, B is the previous entry; a rollback makes B the default. Cut anywhere, the menu
    still offers both (one of them by default), and once finished B boots by default, both good."""
    for writes in range(12):
        root = tmp_path / f"cut-{writes}"
        MountedEsp(root).mkdir("loader/entries")
        write_menu(MountedEsp(root), kind, A, B.as_previous())  # type: ignore[arg-type]
        try:
            make_default(CrashingEsp(root, writes), kind, B, A.as_previous())  # type: ignore[arg-type]
            finished = True
        except SystemExit:
            finished = False
        m = menu(MountedEsp(root), kind)
        assert {i.entry.slot for i in m.items} == {Slot.A, Slot.B}, f"after {writes} writes: {m.items}"
        assert all(i.state is EntryState.GOOD for i in m.items)
        if finished:
            assert m.default is not None and m.default.entry.slot is Slot.B
            assert len(m.items) == 2
            if kind == "systemd-boot":
                assert sorted(os.listdir(root / "loader/entries")) == ["bootc-previous.conf", "bootc.conf"]
            break
    else:
        raise AssertionError("the rollback never finished")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("operation", ["rollback", "update"])
def test_at_no_crash_point_does_a_slot_on_trial_boot_by_default_uncounted(tmp_path: Path, kind: str,
                                                                         operation: str) -> None:
    """B waits on trial (an update before its reboot). Cancelling it (a rollback: A the default) or writing B
    again (an update: B's entries retired first): cut anywhere, B never boots by default without its
    counter, which would make an untried slot the one the machine keeps booting."""
    for writes in range(12):
        root = tmp_path / f"{operation}-cut-{writes}"
        MountedEsp(root).mkdir("loader/entries")
        start_trial(MountedEsp(root), kind, B, A.as_previous(), 3)  # type: ignore[arg-type]
        esp = CrashingEsp(root, writes)
        try:
            if operation == "rollback":
                make_default(esp, kind, A, B.as_previous())  # type: ignore[arg-type]
            else:
                retire_slot(esp, menu(esp, kind), Slot.B)
            finished = True
        except SystemExit:
            finished = False
        default = menu(MountedEsp(root), kind).default
        assert default is not None, f"nothing boots after {writes} writes"
        assert default.entry.slot is Slot.A or default.state is EntryState.TRIAL, (
            f"B boots by default uncounted after {writes} writes")
        if finished:
            assert default.entry.slot is Slot.A
            break
    else:
        raise AssertionError(f"the {operation} never finished")


def test_grub_in_nbcs_grub2_folder_is_read_counted_and_blessed_there(tmp_path: Path) -> None:
    """nbc writes grub.cfg into grub2/ when its host's grub2-install made that folder (its GRUB's prefix): the
    menu is read there, an update's counter goes there (where that GRUB reads it), and a good boot clears it
    there; no grub/ folder appears beside it."""
    esp = MountedEsp(tmp_path / "esp")
    write_menu(esp, "grub2", A)
    os.rename(tmp_path / "esp/grub", tmp_path / "esp/grub2")
    assert [(i.entry.slot, i.state) for i in menu(esp, "grub2").items] == [(Slot.A, EntryState.GOOD)]
    retire_slot(esp, menu(esp, "grub2"), Slot.B)
    start_trial(esp, "grub2", B, A.as_previous(), 3)
    assert not (tmp_path / "esp/grub").exists()
    assert grubenv.decode((tmp_path / "esp/grub2/grubenv").read_bytes()) == {"nbc_trial_slot": "B", "nbc_tries": "3"}
    assert [(i.entry.slot, i.state) for i in menu(esp, "grub2").items] == [(Slot.B, EntryState.TRIAL),
                                                                          (Slot.A, EntryState.GOOD)]
    state_files(tmp_path)
    assert "slot B reached boot-complete.target" in bless(tmp_path, "B").stdout
    assert grubenv.decode((tmp_path / "esp/grub2/grubenv").read_bytes()) == {}
    assert [(i.entry.slot, i.state) for i in menu(esp, "grub2").items] == [(Slot.B, EntryState.GOOD),
                                                                          (Slot.A, EntryState.GOOD)]
    assert not (tmp_path / "esp/grub").exists()


# -- marking a boot good ------------------------------------------------------------------------------

def bless(tmp_path: Path, slot: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "nbc-bless-boot"
    script.write_text(SCRIPT_TEXT)
    env = {"PATH": "/usr/bin:/bin", "NBC_ESP": str(tmp_path / "esp"), "NBC_STATE": str(tmp_path / "state"),
           "NBC_SLOT": slot}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=True)


def state_files(tmp_path: Path) -> None:
    (tmp_path / "state/slots").mkdir(parents=True)
    (tmp_path / "state/config.json").write_text('{"image_ref": "v1"}')
    (tmp_path / "state/slots/B.config.json").write_text('{"image_ref": "v2"}')


@pytest.mark.parametrize("kind", KINDS)
def test_a_good_boot_of_the_slot_on_trial_marks_it_good(tmp_path: Path, kind: str) -> None:
    esp = MountedEsp(tmp_path / "esp")
    start_trial(esp, kind, B, A.as_previous(), 3)  # type: ignore[arg-type]
    if kind == "systemd-boot":
        os.rename(tmp_path / "esp/loader/entries/bootc+3.conf", tmp_path / "esp/loader/entries/bootc+2-1.conf")
    state_files(tmp_path)
    assert "slot B reached boot-complete.target" in bless(tmp_path, "B").stdout
    m = menu(esp, kind)
    assert [(i.entry.slot, i.state) for i in m.items] == [(Slot.B, EntryState.GOOD), (Slot.A, EntryState.GOOD)]
    assert (tmp_path / "state/config.json").read_text() == '{"image_ref": "v2"}'  # B's image boots by default
    if kind == "grub2":
        assert len((tmp_path / "esp/grub/grubenv").read_bytes()) == grubenv.SIZE
        assert grubenv.decode((tmp_path / "esp/grub/grubenv").read_bytes()) == {}


@pytest.mark.parametrize("kind", KINDS)
def test_a_boot_of_the_previous_slot_changes_nothing(tmp_path: Path, kind: str) -> None:
    esp = MountedEsp(tmp_path / "esp")
    start_trial(esp, kind, B, A.as_previous(), 3)  # type: ignore[arg-type]
    state_files(tmp_path)
    before = {p: p.read_bytes() for p in (tmp_path / "esp").rglob("*") if p.is_file()}
    assert bless(tmp_path, "A").stdout == ""
    assert {p: p.read_bytes() for p in (tmp_path / "esp").rglob("*") if p.is_file()} == before
    assert (tmp_path / "state/config.json").read_text() == '{"image_ref": "v1"}'


def test_the_unit_is_written_enabled_into_the_slot(tmp_path: Path) -> None:
    install_boot_assessment(tmp_path)
    unit = (tmp_path / "usr/lib/systemd/system/nbc-bless-boot.service").read_text()
    assert "Requires=boot-complete.target" in unit and "After=boot-complete.target" in unit
    link = tmp_path / "usr/lib/systemd/system/multi-user.target.wants/nbc-bless-boot.service"
    assert os.readlink(link) == "../nbc-bless-boot.service"
    assert os.stat(tmp_path / "usr/libexec/nbc-bless-boot").st_mode & 0o777 == 0o755
    check = subprocess.run(["sh", "-n", str(tmp_path / "usr/libexec/nbc-bless-boot")], capture_output=True)
    assert check.returncode == 0


def test_a_trial_drops_the_default_an_older_install_wrote(tmp_path: Path) -> None:
    """systemd 258 and later give bootc+0-3.conf the id bootc.conf: that default would boot it with no tries
    left. The rest of loader.conf stays as it was."""
    esp = MountedEsp(tmp_path)
    write_menu(esp, "systemd-boot", A)
    (tmp_path / "loader/loader.conf").write_text("default bootc.conf\ntimeout 5\nconsole-mode keep\neditor no\n")
    start_trial(esp, "systemd-boot", B, A.as_previous(), 3)
    assert (tmp_path / "loader/loader.conf").read_text() == "timeout 5\nconsole-mode keep\neditor no\n"
