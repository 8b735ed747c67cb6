"""Checking answers against this machine before anything is touched: the consent to wipe, the disk rules, the
secret files, what a real install would refuse here, and the engine's own read-only checks; and keying the
engine's errors to the answer-file line they are about."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..disks import Disk, Resolved, resolve_target
from ..errors import Cancelled, InputError, NbcError
from ..events import Emit, ErrorEvent, Event, MessageEvent, StepEvent
from ..plan import MIN_PASSPHRASE, InstallPlan
from ..runner import RunContext
from ..secret_files import read_secret_file
from ..storage.tpm import RECOVERY_KEY_HINT, recovery_key_file_problem
from .lines import Loc
from .load import AnswerFile
from .problems import AnswerFileError, Problem


@dataclass
class Checked:
    """Answers resolved here: the plan the engine runs (a device, never rules), and the disk it picked."""

    answers: AnswerFile
    plan: InstallPlan
    disk: Disk | None
    rule: int | None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    """What the engine's checks warn about (an image that cannot boot with this machine's Secure Boot on)."""


def check_answers(answers: AnswerFile, *, ctx: RunContext, require_wipe: bool = True,
                  preflight: bool = True, include_loop: bool | None = None) -> Checked:
    """Resolve the answers on this machine, collecting every problem: the consent, the disk rules, the
    secret files; with ``preflight`` (validate) also what a real install would refuse here (no
    device-mapper, no TPM2) and the engine's own read-only dry-run checks of the image and the layout.
    Reads only; secrets read are registered with ``ctx.redactor`` at once. Raises AnswerFileError."""
    plan = answers.plan
    problems: list[Problem] = []
    for secret in plan.secrets():  # the hashes: the headless run logs the plan it runs
        ctx.redactor.add(secret)
    if require_wipe and not plan.target.is_image_file and not plan.target.wipe:
        problems.append(answers.problem(
            ("target", "wipe"), "no consent to erase the disk: an unattended install erases it only with "
            "wipe = true", "add wipe = true under [target] (and pin the disk with serial = \"...\")"))
    resolved: Resolved | None = None
    try:
        resolved = resolve_target(plan, include_loop=include_loop, ctx=RunContext(redactor=ctx.redactor))
    except InputError as exc:
        problems.append(_keyed(answers, exc, ("target",)))
    problems += _secret_problems(answers, ctx)
    if preflight:
        problems += _encryption_problems(answers)
    checked = Checked(answers, resolved.plan if resolved else plan, resolved.disk if resolved else None,
                      resolved.rule if resolved else None, problems)
    if preflight and resolved is not None and not problems:
        problems += _engine_preflight(answers, checked, ctx)
    if problems:
        raise AnswerFileError(answers.source, problems)
    return checked


def _keyed(answers: AnswerFile, exc: NbcError, default: Loc) -> Problem:
    loc = tuple(exc.details.get("loc") or default)
    return answers.problem(loc, exc.message, exc.hint)


def _secret_problems(answers: AnswerFile, ctx: RunContext) -> list[Problem]:
    plan, out = answers.plan, []
    files: list[tuple[Loc, Path | None, str, int]] = [
        (("system", "root_password_file"), plan.system.root_password_file, "root password", 1)]
    if plan.encryption is not None:
        files.append((("encryption", "passphrase_file"), plan.encryption.passphrase_file, "passphrase",
                      MIN_PASSPHRASE))
        key_file = plan.encryption.recovery_key_file
        if key_file is not None and (problem := recovery_key_file_problem(key_file)):
            out.append(answers.problem(("encryption", "recovery_key_file"), problem, RECOVERY_KEY_HINT))
    for loc, path, what, minimum in files:
        if path is None:
            continue
        try:
            value = read_secret_file(path, what).get_secret_value()
        except InputError as exc:
            out.append(answers.problem(loc, exc.message, exc.hint))
            continue
        ctx.redactor.add(value)
        if len(value) < minimum:
            out.append(answers.problem(loc, f"the {what} file {path} holds fewer than {minimum} characters",
                                       f"write the {what} into it (at least {minimum} characters)"))
    return out


def _encryption_problems(answers: AnswerFile) -> list[Problem]:
    """What a real install would refuse on this machine (the engine's dry run only warns about it)."""
    from ..storage import luks, tpm

    enc, out = answers.plan.encryption, []
    if enc is None:
        return out
    checks: list[tuple[Loc, Callable[[], None]]] = [(("encryption",), luks.check_can_encrypt)]
    if enc.tpm2:
        checks.append((("encryption", "tpm2"), tpm.check_can_enroll))
    for loc, check in checks:
        try:
            check()
        except InputError as exc:
            out.append(answers.problem(loc, exc.message, exc.hint))
    return out


def _engine_preflight(answers: AnswerFile, checked: Checked, ctx: RunContext) -> list[Problem]:
    """The engine's own checks (tools, image reachable, kernel, initramfs, bootloader, Secure Boot, root size)
    in a dry run, which reads and writes nothing; its warnings go to ``checked.warnings``."""
    from ..operations.install import run_install  # the engine, only when an image is to be checked

    seen: list[Event] = []
    try:
        run_install(checked.plan, emit=seen.append, ctx=RunContext(dry_run=True, redactor=ctx.redactor))
    except Cancelled:
        raise  # stopped by its user: not a problem of the answers
    except NbcError as exc:
        image_reached = any(e.type == "message" and (e.message or "").startswith("Image: ") for e in seen)
        loc = tuple(exc.details.get("answer_key") or ()) or preflight_loc(exc.message, image_reached=image_reached)
        return [answers.problem(loc, exc.message, exc.hint)]
    checked.warnings += [answers.problem(preflight_loc(e.message or "", image_reached=True), e.message or "")
                         for e in seen if e.type == "warning"]
    return []


def preflight_loc(message: str, *, image_reached: bool) -> Loc:
    """The key an error of the engine's preflight is about. Its errors name no key: they are told apart by
    what they say, and by whether the image was being looked at (preflight checks the target first)."""
    for words, loc in (("pinned to serial", ("target", "serial")), ("changed since it was checked", ("target",)),
                       ("cannot be installed to", ("target",)), ("choose another disk", ("target",)),
                       ("root slot", ("layout", "root_size")), ("the ESP", ("layout", "esp_size")),
                       ("Secure Boot", ("boot", "secure_boot")),
                       ("systemd-boot", ("boot", "bootloader")),
                       ("image file", ("target", "image_file")), ("free space", ("target", "image_file")),
                       ("in cache", ("image", "staged_digest")), ("multiple matches", ("image", "staged_digest")),
                       ("the image", ("image", "ref")),
                       ("recovery key", ("encryption", "recovery_key_file")),
                       ("LUKS passphrase", ("encryption", "passphrase_file")), ("TPM", ("encryption", "tpm2")),
                       ("device-mapper", ("encryption",)), ("cryptsetup", ("encryption",)),
                       ("root password", ("system", "root_password_file"))):
        if words in message:
            return loc
    return ("image", "ref") if image_reached else ()


def keyed_engine_errors(answers: AnswerFile, emit: Emit) -> Emit:
    """Pass the engine's events on; an error of its first step (the checks before anything is written) gets
    the answer-file key and line it is about, like every other answer-file error."""
    state = {"step": 0, "image": False}

    def forward(event: Event) -> None:
        if isinstance(event, StepEvent):
            state["step"] = event.step
        elif isinstance(event, MessageEvent) and (event.message or "").startswith("Image: "):
            state["image"] = True
        elif isinstance(event, ErrorEvent) and state["step"] <= 1:
            details = dict(event.details or {})
            error = str(details.get("error") or event.message or "")
            loc = tuple(details.get("answer_key") or ()) or preflight_loc(error, image_reached=bool(state["image"]))
            if loc:
                problem = answers.problem(loc, error)
                details.update(error=problem.render(answers.source), key=problem.key, line=problem.line)
                event = event.model_copy(update={"details": details})
        emit(event)

    return forward
