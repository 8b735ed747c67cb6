"""Checking one containers' simple-signing signature (an OpenPGP signed message, as ``skopeo copy
--sign-by`` writes it) with ``gpgv`` against the keys a policy trusts, in a private home that is
removed afterwards. gpgv both checks the signature and hands back the signed payload."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..runner import RunContext, run
from .policy import TrustedKey

ARMOR = b"-----BEGIN PGP"
_BAD_STATUS = {"BADSIG": "the signature does not match its content", "EXPKEYSIG": "the signing key expired",
               "REVKEYSIG": "the signing key was revoked", "EXPSIG": "the signature expired",
               "ERRSIG": "the signing key is not one of the trusted keys"}


@dataclass(frozen=True)
class GpgVerdict:
    fingerprint: str
    """The primary key's fingerprint (VALIDSIG's last field), or "" when the signature did not verify."""
    payload: bytes
    problem: str = ""


def _keyring(keys: Sequence[TrustedKey], home: Path, ctx: RunContext) -> Path:
    """One binary keyring of every trusted key (gpgv does not read armored keys)."""
    parts = []
    for key in keys:
        if key.data.lstrip().startswith(ARMOR):
            done = run(["gpg", "--batch", "--homedir", home, "--dearmor"], ctx=ctx, stdin=key.data,
                       changes_system=False, ok=(0, 2), what=f"reading the key {key.label}")
            if done.returncode or not done.stdout:
                raise InputError(f"The trusted key {key.label} is not an OpenPGP public key")
            parts.append(done.stdout)
        else:
            parts.append(key.data)
    keyring = home / "trusted.gpg"
    keyring.write_bytes(b"".join(parts))
    return keyring


def verify_signed_message(signature: bytes, keys: Sequence[TrustedKey], *, ctx: RunContext) -> GpgVerdict:
    """Whether ``signature`` was made by one of ``keys``, and the payload it signs."""
    with tempfile.TemporaryDirectory(prefix="nbc-tui-gpg-") as tmp:
        home = Path(tmp)
        home.chmod(0o700)
        keyring = _keyring(keys, home, ctx)
        sig_file, out_file = home / "signature", home / "payload"
        sig_file.write_bytes(signature)
        done = run(["gpgv", "--homedir", home, "--keyring", keyring, "--status-fd", "1", "--output", out_file,
                    sig_file], ctx=ctx, changes_system=False, ok=range(256), what="gpgv")
        status = [line.split() for line in done.out.splitlines() if line.startswith("[GNUPG:] ")]
        words = {fields[1]: fields[2:] for fields in status if len(fields) > 1}
        for word, why in _BAD_STATUS.items():
            if word in words:
                return GpgVerdict("", b"", why)
        valid = words.get("VALIDSIG")
        if done.returncode != 0 or "GOODSIG" not in words or not valid:
            return GpgVerdict("", b"", "gpgv did not accept it (not an OpenPGP signature)")
        payload = out_file.read_bytes() if out_file.exists() else b""
        return GpgVerdict(valid[-1].upper(), payload)
