"""`nbc-tui install`: flags -> InstallPlan -> the engine, with text or JSON Lines output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr, ValidationError

from ..backend.errors import InputError, NbcError
from ..backend.events import Emit, ErrorEvent, JsonLinesWriter, MessageEvent, TextWriter
from ..backend.logfile import RunLog
from ..backend.operations.install import run_install
from ..backend.plan import Boot, Encryption, ImageSpec, InstallPlan, Layout, System, Target, User, pcr_problem
from ..backend.runner import RunContext
from ..backend.sizes import GiB, parse_size
from .flags import add_output_flags, add_trust_flags, image_ref, plan_error, trust_settings
from .terminal import confirm_on_terminal, new_passphrase


def add_install_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("install", aliases=["inst"], help="install an image onto a disk or a disk-image file",
                       description="Erase a disk (or create a disk-image file) and install an OCI image "
                                   "onto it with nbc's A/B layout.")
    p.add_argument("-i", "--image", type=image_ref, metavar="SRC",
                   help="the image: a registry reference (quay.io/org/os:tag), localhost/NAME[:TAG] (Podman or "
                        "Docker), oci:PATH[:TAG] or oci-archive:FILE[:TAG]; without it, the one staged image")
    p.add_argument("--local-image", metavar="DIGEST",
                   help="install offline from the staged-install cache (a digest, a digest prefix or a reference)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("-d", "--device", type=Path, metavar="DISK", help="the whole disk to erase and install to")
    where.add_argument("--via-loopback", type=Path, metavar="FILE",
                       help="create this disk-image file (sparse) and install into it")
    p.add_argument("--image-size", type=int, metavar="GIB", default=35,
                   help="size of the disk-image file in GiB (default 35)")
    p.add_argument("-f", "--filesystem", choices=["btrfs", "ext4"], default="btrfs",
                   help="filesystem of root1, root2 and var (default btrfs)")
    p.add_argument("-k", "--karg", action="append", default=[], metavar="ARG",
                   help="extra kernel argument (repeatable)")
    p.add_argument("--root-password-file", type=Path, metavar="FILE",
                   help="set root's password from this file (never give a password on the command line)")
    who = p.add_argument_group("the machine's identity (more users: [[system.users]] in an answer file)")
    who.add_argument("--hostname", metavar="NAME", help="the machine's name (/etc/hostname)")
    who.add_argument("--timezone", metavar="ZONE", help="a time zone the image ships, e.g. Europe/Berlin")
    who.add_argument("--keymap", metavar="KEYMAP", help="the console keymap, one the image ships, e.g. de-latin1")
    who.add_argument("--locale", metavar="LOCALE", help="the system locale, one the image has built, e.g. C.UTF-8")
    who.add_argument("--user", metavar="NAME", help="make this user (the image's useradd; home on /var)")
    who.add_argument("--user-password-file", type=Path, metavar="FILE", help="the user's password, from this file")
    who.add_argument("--user-admin", action="store_true", help="the user is an administrator (sudo or wheel)")
    p.add_argument("--bootloader", choices=["auto", "grub", "systemd-boot"], default="auto",
                   help="auto: systemd-boot when the image has it, else GRUB")
    p.add_argument("--secure-boot", choices=["auto", "require", "off"], default="auto",
                   help="require: refuse an image that cannot boot with Secure Boot on (shim, a signed GRUB and a "
                        "signed kernel), before the disk is touched; auto (default): warn when this machine has "
                        "Secure Boot on and the image cannot boot that way; off: do not check")
    p.add_argument("--esp-size", default="2G", metavar="SIZE", help="EFI system partition size (default 2G)")
    p.add_argument("--root-size", default="12G", metavar="SIZE", help="size of each root slot (default 12G)")
    p.add_argument("--var-min-size", default="4G", metavar="SIZE",
                   help="smallest acceptable /var, which takes the rest of the disk (default 4G)")
    enc = p.add_argument_group("encryption (LUKS2 on root1, root2 and var; the ESP is never encrypted)")
    enc.add_argument("--encrypt", action="store_true",
                     help="encrypt with LUKS2; the passphrase comes from --passphrase-file, else from stdin when "
                          "it is not a terminal, else it is asked twice")
    enc.add_argument("--passphrase-file", "--keyfile", dest="passphrase_file", type=Path, metavar="FILE",
                     help="file holding the LUKS passphrase (trailing newlines are dropped)")
    enc.add_argument("--passphrase", dest="passphrase_argv", metavar="PASS", help=argparse.SUPPRESS)
    enc.add_argument("--tpm2", action="store_true",
                     help="also unlock with this machine's TPM2 (enrolled before the image is written); the "
                          "passphrase stays as a fallback and a recovery key is made")
    enc.add_argument("--tpm2-pcrs", default="", metavar="PCRS",
                     help="PCRs the TPM2 key is bound to, e.g. 7 (the Secure Boot state: firmware, keys, shim); "
                          "empty (the default) binds none, so the disk unlocks on any boot of this machine")
    enc.add_argument("--recovery-key-file", type=Path, metavar="FILE",
                     help="write the TPM2 recovery key here (0600); without it the key is shown once on the "
                          "terminal")
    p.add_argument("-y", "--yes", "--force", dest="yes", action="store_true",
                   help="do not ask before erasing the disk; overwrite an existing disk-image file")
    p.add_argument("--save-answers", type=Path, metavar="FILE",
                   help="write this install's plan as an answer file for nbc-tui --headless (with --dry-run: "
                        "only that); secrets are left out, their files referenced")
    add_trust_flags(p)
    add_output_flags(p)
    p.set_defaults(func=cmd_install)


def image_from_args(args: argparse.Namespace, say: Callable[[str], None]) -> ImageSpec:
    """--image, --local-image, or the single staged image (nbc's rules, reference §1.2), with the trust flags."""
    try:
        trust = trust_settings(args)
        return ImageSpec(**_image_source(args, say), cosign_key=trust.cosign_key,
                         insecure_skip_verify=trust.insecure_skip_verify, signature_policy=trust.signature_policy,
                         registries_d=trust.registries_d)
    except ValidationError as exc:
        raise plan_error(exc) from None


def _image_source(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, str]:
    from ..backend.image.cache import CacheKind, cache_dir, find_cached, single_staged

    if args.image and args.local_image:
        raise InputError("--image and --local-image are mutually exclusive")
    if args.image:
        return {"ref": args.image}
    if args.local_image:
        entry = find_cached(CacheKind.INSTALL, args.local_image)
        say(f"Using staged image: {entry.image_ref}")
        say(f"  Digest: {entry.image_digest}")
        return {"ref": entry.image_ref, "staged_digest": entry.image_digest}
    entry = single_staged(CacheKind.INSTALL)
    if entry is None:
        raise InputError(f"no --image specified and no staged images found in {cache_dir(CacheKind.INSTALL)}",
                         hint="give --image REF, or stage one with: nbc-tui download --for-install --image REF")
    say(f"Auto-detected staged image: {entry.image_ref}")
    say(f"  Digest: {entry.image_digest}")
    return {"ref": entry.image_ref, "staged_digest": entry.image_digest}


def encryption_from_args(args: argparse.Namespace, read_passphrase: Callable[[], SecretStr]) -> Encryption | None:
    """--encrypt and friends; the passphrase never comes from argv (it would show in ps and the history)."""
    if args.passphrase_argv is not None:
        raise InputError("--passphrase is not accepted: a passphrase on the command line is visible to every "
                         "user in the process list and stays in the shell history",
                         hint="use --passphrase-file FILE, pipe it on stdin, or type it when asked")
    tpm_flags = args.tpm2_pcrs or args.recovery_key_file is not None
    if not args.encrypt:
        if args.passphrase_file is not None or args.tpm2 or tpm_flags:
            raise InputError("--passphrase-file, --tpm2, --tpm2-pcrs and --recovery-key-file need --encrypt")
        return None
    if tpm_flags and not args.tpm2:
        raise InputError("--tpm2-pcrs and --recovery-key-file need --tpm2")
    pcrs = parse_pcrs(args.tpm2_pcrs)
    try:
        if args.passphrase_file is not None:
            return Encryption(passphrase_file=args.passphrase_file.absolute(), tpm2=args.tpm2, tpm2_pcrs=pcrs,
                              recovery_key_file=_abs(args.recovery_key_file))
        return Encryption(passphrase=read_passphrase(), tpm2=args.tpm2, tpm2_pcrs=pcrs,
                          recovery_key_file=_abs(args.recovery_key_file))
    except ValidationError as exc:
        raise plan_error(exc) from exc


def _abs(path: Path | None) -> Path | None:
    return path.absolute() if path is not None else None


def parse_pcrs(text: str) -> tuple[int, ...]:
    """``7``, ``0+7`` or ``0,7``; empty binds no PCR."""
    parts = [p for p in text.replace(",", "+").split("+") if p.strip()]
    try:
        pcrs = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"--tpm2-pcrs {text!r}: give PCR numbers such as 7 or 0+7") from None
    if any(not 0 <= p <= 23 for p in pcrs):
        raise InputError(f"--tpm2-pcrs {text!r}: PCRs are numbered 0 to 23")
    if problem := pcr_problem(pcrs):
        raise InputError(f"--tpm2-pcrs {text!r}: {problem}")
    return pcrs


def plan_from_args(args: argparse.Namespace, image: ImageSpec,
                   read_passphrase: Callable[[], SecretStr] = new_passphrase) -> InstallPlan:
    encryption = encryption_from_args(args, read_passphrase)
    try:
        layout = Layout(filesystem=args.filesystem, esp_size=parse_size(args.esp_size, default_unit="G"),
                        root_size=parse_size(args.root_size, default_unit="G"),
                        var_min_size=parse_size(args.var_min_size, default_unit="G"))
        if args.device is not None:
            target = Target(device=args.device)
        else:
            target = Target(image_file=args.via_loopback.absolute(), image_size=args.image_size * GiB,
                            overwrite=args.yes)
        return InstallPlan(
            image=image, target=target, layout=layout,
            encryption=encryption,
            boot=Boot(bootloader=args.bootloader, kernel_args=tuple(args.karg), secure_boot=args.secure_boot),
            system=System(root_password_file=args.root_password_file, hostname=args.hostname,
                          timezone=args.timezone, keymap=args.keymap, locale=args.locale, users=_users(args)),
        )
    except (ValidationError, ValueError) as exc:
        raise plan_error(exc) from exc


def _users(args: argparse.Namespace) -> tuple[User, ...]:
    if args.user is None:
        if args.user_password_file or args.user_admin:
            raise InputError("--user-password-file and --user-admin need --user NAME")
        return ()
    password = args.user_password_file.absolute() if args.user_password_file else None
    return (User(name=args.user, password_file=password, admin=args.user_admin),)


def cmd_install(args: argparse.Namespace) -> int:
    emit: Emit = JsonLinesWriter() if args.json else TextWriter(verbose=args.verbose)
    ctx = RunContext(dry_run=args.dry_run)
    if args.verbose:
        ctx.on_output = _tool_output(emit)
    with RunLog(ctx.redactor) as run_log:
        try:
            image = image_from_args(args, lambda text: emit(MessageEvent(message=text)))
            plan = plan_from_args(args, image)
            if args.save_answers:
                from ..backend.answers import save_answers

                emit(MessageEvent(message=f"Answers saved to {save_answers(plan, args.save_answers)}"))
        except NbcError as exc:
            emit(ErrorEvent.from_error("Invalid arguments" if isinstance(exc, InputError) else "Installation failed",
                                       exc))
            raise
        confirm: Callable[[str], bool] = (lambda _what: True) if args.yes else confirm_on_terminal
        run_install(plan, emit=emit, ctx=ctx, confirm=confirm, log_snapshot=run_log.this_run,
                    on_recovery_key=show_recovery_key if sys.stderr.isatty() else None)
        if not args.json and not args.dry_run and plan.target.is_image_file:
            print(boot_hint(plan.target.image_file))  # type: ignore[arg-type]
        print(f"Log: {run_log.path}", file=sys.stderr)
    return 0


def show_recovery_key(key: SecretStr) -> None:
    """Shown once, on the terminal only (never in the log or the JSON events)."""
    sys.stderr.write("\nTPM2 recovery key (shown once; it opens the disk when the TPM will not; write it "
                     f"down and keep it apart from this machine):\n\n    {key.get_secret_value()}\n\n")
    sys.stderr.flush()


def _tool_output(emit: Emit) -> Callable[[str], None]:
    def show(line: str) -> None:
        emit(MessageEvent(message=f"  | {line}", details={"verbose": True}))

    return show


def boot_hint(image: Path) -> str:
    return (
        "\nTo boot it in QEMU (UEFI):\n"
        "  cp /usr/share/OVMF/OVMF_VARS_4M.fd /tmp/vars.fd\n"
        "  qemu-system-x86_64 -machine q35 -m 2048 -smp 2 -accel tcg \\\n"
        "    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \\\n"
        "    -drive if=pflash,format=raw,file=/tmp/vars.fd \\\n"
        f"    -drive file={image},format=raw,if=virtio -serial mon:stdio -nographic\n"
        "(-accel kvm instead of tcg is much faster where KVM works.)\n"
        "Or convert it: qemu-img convert -O qcow2 " + f"{image} {image.with_suffix('.qcow2')}"
    )
