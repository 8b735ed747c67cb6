"""Flags and error wording shared by the subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import ValidationError

from ..backend.errors import InputError
from ..backend.trust.verify import TrustSettings


def image_ref(text: str) -> str:
    """``--image``'s type: a local layout or archive named relative to where the command runs becomes absolute,
    as it is recorded (the installed system's updates, the staged cache, a saved answer file)."""
    from ..backend.image.reference import absolute_local_ref

    return absolute_local_ref(text, Path.cwd())


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON Lines progress on stdout (and nothing else)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the output of the tools that run")
    p.add_argument("-n", "--dry-run", action="store_true", help="show what would be done; write nothing")


def plan_error(exc: ValidationError | ValueError) -> InputError:
    """A plan that does not validate, as an input error (exit 2): one sentence per problem."""
    if isinstance(exc, ValidationError):
        # Here, not at the top: the commands that never build a plan (download, cache, status) start without
        # building its models.
        from ..backend.plan import validation_messages
        return InputError("; ".join(validation_messages(exc)))
    return InputError(str(exc))


def add_trust_flags(p: argparse.ArgumentParser) -> None:
    """How registry pulls are verified (trust/verify.py): nbc's two flags and containers' two files."""
    g = p.add_argument_group("image signatures (registry pulls)")
    g.add_argument("--cosign-key", type=Path, metavar="FILE",
                   help="require a cosign signature by this public key (PEM, ECDSA) instead of the signature policy")
    g.add_argument("--insecure-skip-verify", action="store_true", help="do not check image signatures (warns)")
    g.add_argument("--signature-policy", type=Path, metavar="FILE",
                   help="containers' policy.json to follow (default: /etc/containers/policy.json)")
    g.add_argument("--registries.d", dest="registries_d", type=Path, metavar="DIR",
                   help="where registries.d says GPG signatures are (default: /etc/containers/registries.d)")


def trust_settings(args: argparse.Namespace) -> TrustSettings:
    """The trust flags as settings; contradicting ones are an input error."""
    def absolute(path: Path | None) -> Path | None:
        return path.absolute() if path is not None else None

    return TrustSettings(absolute(args.cosign_key), args.insecure_skip_verify, absolute(args.signature_policy),
                         absolute(args.registries_d))
