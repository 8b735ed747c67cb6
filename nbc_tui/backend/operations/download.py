"""Staging an image ahead of time (``download``, reference §1.7): into the install cache for an offline install,
or into the update cache as the next update.

Two steps over one driver: which image and whether it may be used (for an update, the installed system's
image unless one is named, the key its install trusts, and an error when it is the image the system runs
already; then the signature verdict), and the download itself (image/cache.download: every blob verified,
the image scanned as an install would scan it). A dry run takes the first step only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..engine import Step, StepContext, When, run_steps
from ..errors import Cancelled, InputError, NbcError
from ..events import CompleteEvent, Emit
from ..image.cache import CachedImage, CacheKind, cache_dir, download
from ..image.opener import open_image
from ..image.source import ImageSource
from ..locks import CACHE_LOCK_WAIT
from ..provenance import Verification
from ..runner import RunContext
from ..system.state import SystemConfig, read_system_config
from ..trust.verify import TrustSettings, settings_for_update, verify_pull


@dataclass(frozen=True)
class DownloadRequest:
    kind: CacheKind
    image: str | None
    """The image; None for the update cache takes the installed system's."""
    trust: TrustSettings = field(default_factory=TrustSettings)
    parallel: int = 3
    """Layers downloaded at once."""
    lock_wait: float = CACHE_LOCK_WAIT
    system_root: Path = Path("/")
    """The running system, whose nbc state an update is for (tests give a directory)."""


@dataclass(frozen=True)
class StagedImage:
    """What a download staged (``entry``), or in a dry run what it would have: the image and its digest."""

    ref: str
    digest: str
    """The manifest's."""
    cache_dir: Path
    entry: CachedImage | None
    """None in a dry run."""


@dataclass
class _Download:
    request: DownloadRequest
    ref: str = ""
    source: ImageSource | None = None
    verification: Verification | None = None
    entry: CachedImage | None = None


def stage_image(request: DownloadRequest, *, ctx: RunContext, emit: Emit) -> StagedImage:
    """Download ``request``'s image into its cache (nothing under ``ctx.dry_run``) and say what was staged.
    Raises InputError (no image to take, a bad reference), UntrustedImage, NbcError (the update is the image
    the system runs, a damaged blob, a full disk), Cancelled."""
    run = _Download(request)
    steps = [Step("image", "Resolving the image", _resolve, when=When.ALWAYS),
             Step("download", "Downloading and checking the image", _download)]
    run_steps(steps, run, ctx=ctx, emit=emit, failed="failed to download image",
              interrupted=Cancelled("Interrupted while downloading"),
              complete=lambda _run, _t: CompleteEvent(message=""))
    assert run.source is not None
    return StagedImage(run.ref, run.entry.image_digest if run.entry else run.source.manifest_digest,
                       cache_dir(request.kind), run.entry)


def _resolve(run: _Download, io: StepContext) -> None:
    """The image opened (manifest read, no layer yet) and its signature verdict; for an update, refused when the
    system runs it already."""
    request = run.request
    settings, config = request.trust, None
    if request.kind is CacheKind.UPDATE:
        config = _installed_config(request.system_root)
        if config is not None:
            settings = settings_for_update(settings, config, request.system_root)
    run.ref = request.image or _installed_image(config, io)
    run.source = io.hold(open_image(run.ref))
    run.verification = verify_pull(run.source, settings, ctx=io.ctx, warn=io.warn)
    io.message(f"Signature: {run.verification.describe()}")
    if config is not None and {run.source.manifest_digest, run.source.index_digest} & config.digests:
        raise NbcError(f"no update available: image digest matches installed version "
                       f"({config.image_digest[:19]}...)")


def _download(run: _Download, io: StepContext) -> None:
    assert run.source is not None
    request = run.request
    run.entry = download(run.source, request.kind, ref_text=run.ref, on_progress=io.progress("Downloading"),
                         cancel=io.ctx.cancel, parallel=request.parallel, on_message=io.message,
                         lock_wait=request.lock_wait, verification=run.verification)


def _installed_config(root: Path) -> SystemConfig | None:
    try:
        return read_system_config(root)
    except (OSError, ValueError):
        return None


def _installed_image(config: SystemConfig | None, io: StepContext) -> str:
    if config is None:
        raise InputError("no --image given and this system has no nbc configuration to take it from",
                         hint="Give --image REF (the installed system's /var/lib/nbc/state/config.json "
                              "is missing or unreadable)")
    io.message(f"Using the installed system's image: {config.image_ref}")
    return config.image_ref
