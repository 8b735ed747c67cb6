"""GRUB without grub-install: a standalone EFI image built with grub-mkimage, and nbc's grub.cfg.

The image is built from the target image's own GRUB modules when it has them (with its own grub-mkimage
in a chroot when it has that too), else from the host's. Its embedded early config finds the ESP by the
filesystem UUID chosen at mkfs time, so nothing probes the target disk (reference §11.3, DESIGN.md).

Boot counting: a grub.cfg with two entries starts with a header that reads ``nbc_trial_slot`` and
``nbc_tries`` from ``grub/grubenv`` (:mod:`.grubenv`). While the first entry's slot is on trial it counts a try
down before booting it; with none left it boots the second entry. Only ``load_env``, ``save_env``, ``[`` and
``echo`` are used (the loadenv, test and echo modules), which Debian's signed GRUB has built in, so the shim
chain counts the same way.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError, NbcError
from ..inroot import resolve_in_target
from ..osrelease import read_os_release
from ..runner import RunContext, run, which
from ..storage.esp import EspFiles
from .entries import BootEntry
from .grubenv import TRIAL_SLOT, TRIES
from .pe import PeError, grub_prefix, prefix_directory
from .shim import find_shim, find_signed_grub, install_shim_chain, shim_chain

GRUB_FORMAT = "x86_64-efi"
HOST_MODULE_DIR = Path("/usr/lib/grub", GRUB_FORMAT)
IMAGE_MODULE_DIR = f"usr/lib/grub/{GRUB_FORMAT}"
IMAGE_MKIMAGE = ("usr/bin/grub-mkimage", "usr/bin/grub2-mkimage", "usr/sbin/grub-mkimage",
                 "usr/sbin/grub2-mkimage")
HOST_MKIMAGE = ("grub-mkimage", "grub2-mkimage")

# Built into the image: the ESP's partition table and filesystem, search, the menu and Linux loading,
# consoles (serial, GOP) and gzip'd kernels. Without the first group GRUB cannot reach its grub.cfg.
# loadenv, test and echo run the boot counting header: without them a slot on trial would never fall back.
REQUIRED_MODULES = ("part_gpt", "fat", "search", "search_fs_uuid", "normal", "configfile", "linux", "loadenv",
                    "test", "echo")
OPTIONAL_MODULES = ("ext2", "btrfs", "serial", "terminal", "efi_gop", "all_video", "gzio")
GRUB_MODULES = REQUIRED_MODULES + OPTIONAL_MODULES

GRUB_DIR = "grub"
GRUB_CFG = f"{GRUB_DIR}/grub.cfg"
REMOVABLE_DEST = "EFI/BOOT/BOOTX64.EFI"
# A signed distro GRUB started by shim reads grub.cfg from its own directory ($cmdpath).
SHIM_GRUB_CFG = "EFI/BOOT/grub.cfg"
GRUB_TIMEOUT = 5
MAX_TRIES = 9
"""The most tries a slot on trial may be given (the header counts down by a ladder of comparisons)."""

# Characters GRUB's script lexer takes literally in an unquoted word.
_GRUB_PLAIN = re.compile(r"[A-Za-z0-9_.,:/=+@%-]+")


@dataclass(frozen=True)
class GrubSource:
    """Which grub-mkimage builds the EFI image, and from which modules."""

    kind: Literal["image-chroot", "image-modules", "host"]
    mkimage: str
    """Inside the target for image-chroot (e.g. /usr/bin/grub-mkimage), else a host path."""
    module_dir: Path
    """Host path of the x86_64-efi module directory."""


def grub_quote(word: str) -> str:
    """Quote one kernel argument for grub.cfg: plain words stay as they are (nbc's output), others are
    single-quoted. An argument with the kernel's double quotes (``dyndbg="file a.c +p"``) or a space is
    double-quoted for GRUB without them: GRUB puts quotes around an argument that has a space when it builds
    the kernel's command line, so the kernel gets ``"dyndbg=file a.c +p"``, one argument, as systemd-boot's
    entry gives it. Kept in single quotes, GRUB would pass the inner quotes on, escaped, and the kernel would
    split the argument."""
    if _GRUB_PLAIN.fullmatch(word):
        return word
    if '"' in word or any(c.isspace() for c in word):
        bare = word.replace('"', "")
        return '"' + re.sub(r"([\\$])", r"\\\1", bare) + '"'  # in GRUB's double quotes, \ and $ are special
    return "'" + word.replace("'", "'\\''") + "'"


def render_grub_cfg(entries: Sequence[BootEntry], *, timeout: int = GRUB_TIMEOUT) -> str:
    """grub.cfg in nbc's format (reference §11.3), titles quoted safely; with two entries of known slots, the
    boot counting header for the first (the second boots when the first is out of tries, or cannot load)."""
    lines = [f"set timeout={timeout}", "set default=0"]
    if len(entries) > 1 and entries[0].slot is not None and entries[1].slot is not None:
        lines += _counting(entries[0].slot.value, entries[1].slot.value)
    for entry in entries:
        title = " ".join(entry.title.split())
        lines += [
            "",
            f"menuentry {grub_quote_always(title)} {{",
            f"    linux /{entry.linux.lstrip('/')} {' '.join(grub_quote(o) for o in entry.options)}".rstrip(),
            f"    initrd /{entry.initrd.lstrip('/')}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _counting(trial: str, previous: str) -> list[str]:
    ladder = [f'    if [ "${{{TRIES}}}" = "{MAX_TRIES}" ]; then set {TRIES}={MAX_TRIES - 1}']
    ladder += [f'    elif [ "${{{TRIES}}}" = "{n}" ]; then set {TRIES}={n - 1}' for n in range(MAX_TRIES - 1, 1, -1)]
    ladder += [f"    else set {TRIES}=0", "    fi"]
    return [
        "set fallback=1",
        f"# Boot counting (nbc-tui): slot {trial} on trial boots while it has tries left, then slot {previous}.",
        f"load_env {TRIAL_SLOT} {TRIES}",
        f'if [ "${{{TRIAL_SLOT}}}" = "{trial}" ]; then',
        f'  if [ "${{{TRIES}}}" = "0" ]; then',
        "    set default=1",
        f'    echo "nbc: slot {trial} is out of tries: booting slot {previous}"',
        "  else",
        *ladder,
        f"    save_env {TRIES}",
        f'    echo "nbc: trying slot {trial}; tries left after this one: ${{{TRIES}}}"',
        "  fi",
        "fi",
    ]


def parse_grub_cfg(text: str) -> list[BootEntry]:
    """The menu entries of a grub.cfg nbc or nbc-tui wrote, in order (their slots unknown: see entries.py)."""
    found = []
    for block in _MENUENTRY.finditer(text):
        body = block["body"]
        linux = re.search(r"^\s*linux\s+(\S+)(.*)$", body, re.MULTILINE)
        initrd = re.search(r"^\s*initrd\s+(\S+)", body, re.MULTILINE)
        if linux is None:
            continue
        found.append(BootEntry(title=_unquote_title(block["title"]), linux=linux[1].lstrip("/"),
                               initrd=initrd[1].lstrip("/") if initrd else "",
                               options=tuple(grub_words(linux[2]))))
    return found


def grub_words(text: str) -> list[str]:
    """The words of a GRUB command line as GRUB's lexer reads them: single quotes keep everything, double
    quotes keep all but a ``\\`` before ``\\ $ "``, a backslash outside quotes keeps the next character."""
    words: list[str] = []
    chars: list[str] = []
    in_word, quote, i = False, "", 0
    while i < len(text):
        c = text[i]
        escaped = c == "\\" and i + 1 < len(text) and (quote == "" or (quote == '"' and text[i + 1] in '\\$"'))
        if escaped:
            i += 1
            chars.append(text[i])
        elif quote:
            if c == quote:
                quote = ""
            else:
                chars.append(c)
        elif c.isspace():
            if in_word:
                words.append("".join(chars))
            chars, in_word = [], False
            i += 1
            continue
        elif c in "'\"":
            quote = c
        else:
            chars.append(c)
        in_word = True
        i += 1
    if in_word:
        words.append("".join(chars))
    return words


_MENUENTRY = re.compile(r"^menuentry\s+(?P<title>'(?:[^']|'\\'')*')[^{]*\{(?P<body>.*?)^\}", re.MULTILINE | re.DOTALL)


def _unquote_title(quoted: str) -> str:
    return quoted[1:-1].replace("'\\''", "'")


def grub_quote_always(text: str) -> str:
    """Single-quote text for GRUB (a ' becomes '\\'' ), as nbc writes menu titles: '<OSName>'."""
    return "'" + text.replace("'", "'\\''") + "'"


def render_early_config(esp_uuid: str) -> str:
    """The config embedded in the EFI image (and the shim chain's EFI/BOOT/grub.cfg): find the ESP by
    its filesystem UUID and read /grub/grub.cfg there."""
    return (
        f"search --no-floppy --fs-uuid --set=root {esp_uuid}\n"
        f"set prefix=($root)/{GRUB_DIR}\n"
        f"configfile ($root)/{GRUB_CFG}\n"
    )


def find_grub_source(target_root: Path, *, host_module_dir: Path | None = None) -> GrubSource | None:
    """The image's GRUB when it has modules (its own grub-mkimage in a chroot if present), else the host's.

    None when neither the image nor the host has x86_64-efi modules and a grub-mkimage to pack them.
    """
    image_modules = resolve_in_target(target_root, IMAGE_MODULE_DIR)
    if image_modules is not None and _is_module_dir(image_modules):
        for rel in IMAGE_MKIMAGE:
            tool = resolve_in_target(target_root, rel)
            if tool is not None and tool.is_file():
                return GrubSource("image-chroot", "/" + rel, image_modules)
        host_tool = _host_mkimage()
        if host_tool is not None:
            return GrubSource("image-modules", host_tool, image_modules)
        return None
    host_modules = host_module_dir or HOST_MODULE_DIR
    host_tool = _host_mkimage()
    if host_tool is not None and _is_module_dir(host_modules):
        return GrubSource("host", host_tool, host_modules)
    return None


def grub_available(target_root: Path) -> bool:
    return find_grub_source(target_root) is not None


def build_grub_efi(
    source: GrubSource, *, target_root: Path, esp_uuid: str, output: Path, ctx: RunContext,
    warn: Callable[[str], None],
) -> None:
    """Build the standalone GRUB EFI image at host path ``output``."""
    modules = [m for m in GRUB_MODULES if (source.module_dir / f"{m}.mod").is_file()]
    missing = [m for m in REQUIRED_MODULES if m not in modules]
    if missing:
        raise InputError(
            f"GRUB modules missing from {source.module_dir}: {', '.join(missing)}",
            hint="install the full x86_64-efi GRUB modules (Debian: grub-efi-amd64-bin), or use systemd-boot",
        )
    skipped = [m for m in OPTIONAL_MODULES if m not in modules]
    if skipped:
        warn(f"GRUB modules not available, built without them: {', '.join(skipped)}")
    early = render_early_config(esp_uuid)
    if source.kind == "image-chroot":
        _build_in_chroot(source, modules, early, target_root=target_root, output=output, ctx=ctx)
    else:
        with tempfile.TemporaryDirectory(prefix="nbc-tui-grub-") as tmp:
            cfg = Path(tmp, "early.cfg")
            cfg.write_text(early)
            run([source.mkimage, "-O", GRUB_FORMAT, "-d", source.module_dir, "-p", f"/{GRUB_DIR}",
                 "-c", cfg, "-o", output, *modules], ctx=ctx, what="grub-mkimage")
    if not ctx.dry_run:
        _check_pe(output)


def _build_in_chroot(
    source: GrubSource, modules: list[str], early: str, *, target_root: Path, output: Path, ctx: RunContext
) -> None:
    # The image's tool sees only the target, so its input and output live in a scratch dir inside it.
    base = target_root / "var/tmp"
    if not base.is_dir():
        base = target_root / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="nbc-tui-grub-", dir=base))
    try:
        (scratch / "early.cfg").write_text(early)
        inside = "/" + str(scratch.relative_to(target_root))
        module_dir = "/" + IMAGE_MODULE_DIR
        run(["chroot", target_root, source.mkimage, "-O", GRUB_FORMAT, "-d", module_dir,
             "-p", f"/{GRUB_DIR}", "-c", f"{inside}/early.cfg", "-o", f"{inside}/grub.efi", *modules],
            ctx=ctx, what="grub-mkimage (image)")
        if not ctx.dry_run:
            shutil.copyfile(scratch / "grub.efi", output)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install_grub(*, target_root: Path, esp: EspFiles, esp_uuid: str, ctx: RunContext,
                 warn: Callable[[str], None]) -> None:
    """BOOTX64.EFI: our GRUB, or shim and the image's signed GRUB with the early config beside it. grub.cfg
    and grubenv are written by boot/menu.py."""
    esp.mkdir("EFI/BOOT")
    signed = find_signed_grub(target_root)
    chain = shim_chain(target_root, signed)
    if chain is not None:
        install_shim_chain(esp, chain)
        early = render_early_config(esp_uuid)
        esp.put_text(early, SHIM_GRUB_CFG)
        # The signed GRUB reads $prefix/grub.cfg first; without it, it searches every device for /.disk/info
        # and another medium that has one (an installer stick) would take over the boot.
        prefix = signed_grub_prefix_dir(chain.second_stage, target_root)
        if prefix is None:
            warn("Could not tell where the image's signed GRUB looks for its config first: only "
                 f"{SHIM_GRUB_CFG} was written (another attached medium may take over the boot)")
        elif prefix.casefold() not in (SHIM_GRUB_CFG.rpartition("/")[0].casefold(), GRUB_DIR):  # no clobbering
            esp.mkdir(prefix)
            esp.put_text(early, f"{prefix}/grub.cfg")
        return
    if find_shim(target_root) is not None:
        warn("The image has shim but no signed GRUB: booting GRUB directly (Secure Boot must be off)")
    source = find_grub_source(target_root)
    if source is None:
        raise InputError(
            "no GRUB to install: neither the image nor this machine has x86_64-efi GRUB modules and grub-mkimage",
            hint="install grub-efi-amd64-bin on this machine, or use an image with systemd-boot",
        )
    with tempfile.TemporaryDirectory(prefix="nbc-tui-grub-") as tmp:
        image = Path(tmp, "BOOTX64.EFI")
        build_grub_efi(source, target_root=target_root, esp_uuid=esp_uuid, output=image, ctx=ctx, warn=warn)
        esp.put_file(image, REMOVABLE_DEST)


def signed_grub_prefix_dir(signed_grub: Path, target_root: Path) -> str | None:
    """The ESP directory the signed GRUB's built-in prefix names (``EFI/debian``), read from the binary; else
    ``EFI/<os-release ID>``, the convention distributions build with; None when neither can be told."""
    try:
        prefix = grub_prefix(signed_grub.read_bytes())
    except (OSError, PeError):
        prefix = None
    if prefix is not None:
        return prefix_directory(prefix)
    os_id = (read_os_release(target_root) or {}).get("ID", "")
    return f"EFI/{os_id}" if re.fullmatch(r"[a-z0-9][a-z0-9._-]*", os_id) else None


def _host_mkimage() -> str | None:
    for name in HOST_MKIMAGE:
        found = which(name)
        if found:
            return found
    return None


def _is_module_dir(path: Path) -> bool:
    return (path / "kernel.img").is_file() and (path / "normal.mod").is_file()


def _check_pe(path: Path) -> None:
    with path.open("rb") as f:
        head = f.read(2)
    if head != b"MZ":
        raise NbcError(f"grub-mkimage did not produce an EFI executable at {path}")
