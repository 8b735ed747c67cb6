"""`nbc-tui download` and `nbc-tui cache list|remove|clear`: the staged image cache (reference §1.7, §1.8).

Flags and JSON objects are nbc's (§14.4). Under --json stdout holds exactly one pretty JSON object (the
result, or the error object ``{"error": true, "message", "details"}``); text results go to stdout and
progress and notes to stderr. These commands report their own errors, so they return an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from ..backend.errors import InputError, NbcError
from ..backend.events import Event, MessageEvent, ProgressEvent, WarningEvent
from ..backend.image.cache import CachedImage, CacheKind, cache_dir, clear_cache, list_cached, remove_cached
from ..backend.locks import CACHE_LOCK_WAIT
from ..backend.operations.download import DownloadRequest, stage_image
from ..backend.runner import RunContext
from .flags import add_trust_flags, image_ref, trust_settings

MiB = 1024 * 1024


def _add_flags(p: argparse.ArgumentParser, *, dry_run: bool) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="say more (skipped cache entries, digests)")
    if dry_run:
        p.add_argument("-n", "--dry-run", action="store_true", help="resolve the image, download nothing")
    p.add_argument("--lock-wait", type=float, default=CACHE_LOCK_WAIT, metavar="SECONDS",
                   help=f"how long to wait for another nbc process using the cache (default {CACHE_LOCK_WAIT:g})")


def add_download_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("download", aliases=["dl"], help="stage an image in the local cache",
                       description="Download an image into /var/cache/nbc/staged-install (for an offline "
                                   "install) or staged-update (for the next update).")
    p.add_argument("-i", "--image", type=image_ref, metavar="REF",
                   help="the image (with --for-update, default: the installed system's image)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--for-install", action="store_true", help="stage for `install --local-image`")
    which.add_argument("--for-update", action="store_true", help="stage as the pending update (replaces it)")
    p.add_argument("--parallel", type=int, default=3, metavar="N", help="layers downloaded at once (default 3)")
    add_trust_flags(p)
    _add_flags(p, dry_run=True)
    p.set_defaults(func=cmd_download)


def add_cache_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cache", help="list, remove or clear staged images",
                       description="Manage the staged images in /var/cache/nbc.")
    cache_sub = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    lst = cache_sub.add_parser("list", aliases=["ls"], help="list staged images")
    which = lst.add_mutually_exclusive_group(required=True)
    which.add_argument("--install-images", action="store_true", help="the images staged for install")
    which.add_argument("--update-images", action="store_true", help="the update staged for this system")
    _add_flags(lst, dry_run=False)
    lst.set_defaults(func=cmd_cache_list)

    rm = cache_sub.add_parser("remove", aliases=["rm"], help="remove one staged image",
                              description="Remove the staged image named by a digest, a unique digest "
                                          "prefix (sha256:ab or sha256-ab) or the reference it came from.")
    rm.add_argument("key", metavar="DIGEST-OR-PREFIX")
    rm.add_argument("--type", choices=[k.value for k in CacheKind], default=None,
                    help="which cache (default: install, then update)")
    _add_flags(rm, dry_run=False)
    rm.set_defaults(func=cmd_cache_remove)

    clr = cache_sub.add_parser("clear", help="remove every image of one cache")
    which = clr.add_mutually_exclusive_group(required=True)
    which.add_argument("--install", action="store_true", help="clear the staged-install cache")
    which.add_argument("--update", action="store_true", help="clear the staged-update cache")
    _add_flags(clr, dry_run=False)
    clr.set_defaults(func=cmd_cache_clear)


# -- output helpers ------------------------------------------------------------------------------------

def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _fail(args: argparse.Namespace, summary: str, exc: NbcError) -> int:
    """nbc's generic error object under --json; `Error: <message>` (and the hint) on stderr always."""
    if args.json:
        out: dict[str, Any] = {"error": True, "message": summary, "details": exc.message}
        if exc.hint:
            out["hint"] = exc.hint
        _print_json(out)
    _note(f"Error: {exc.message}")
    if exc.hint:
        _note(f"  {exc.hint}")
    return exc.exit_code


def _mb(n: int) -> str:
    return f"{n / MiB:.2f} MB"  # nbc's "MB" are MiB


def _guarded(summary: str) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def wrap(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        def run(args: argparse.Namespace) -> int:
            try:
                return fn(args)
            except NbcError as exc:
                what = summary
                if exc.message == "image not found in cache" and fn is _cache_remove:
                    what = "image not found"
                return _fail(args, what, exc)
        run.__doc__ = fn.__doc__
        return run
    return wrap


# -- download ------------------------------------------------------------------------------------------

class _TextProgress:
    """Byte progress on stderr: one line a second at most (a carriage return on a terminal)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._start = time.monotonic()
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < 1.0:
            return
        self._last = now
        rate = done / max(now - self._start, 1e-3)
        pct = 100 * done // total if total else 100
        line = f"  {_mb(done)} / {_mb(total)} ({pct}%, {rate / MiB:.1f} MB/s)"
        if self._tty:
            sys.stderr.write("\r" + line + ("\n" if done >= total else ""))
            sys.stderr.flush()
        else:
            _note(line)


def _download(args: argparse.Namespace) -> int:
    if args.for_install and not args.image:
        raise InputError("--for-install requires --image", hint="e.g. nbc-tui download --image REF --for-install")
    if args.parallel < 1:
        raise InputError("--parallel must be at least 1")
    request = DownloadRequest(CacheKind.UPDATE if args.for_update else CacheKind.INSTALL, args.image,
                              trust_settings(args), parallel=args.parallel, lock_wait=args.lock_wait)
    progress = None if args.json else _TextProgress()

    def emit(event: Event) -> None:
        # The result is printed below; errors by _guarded. Notes go to stderr, in text mode only.
        if isinstance(event, WarningEvent):
            _note(f"Warning: {event.message}")
        elif isinstance(event, MessageEvent) and not args.json:
            _note(event.message)
        elif isinstance(event, ProgressEvent) and progress is not None and event.details:
            progress(event.details["bytes_done"], event.details["bytes_total"])

    staged = stage_image(request, ctx=RunContext(dry_run=args.dry_run), emit=emit)
    entry = staged.entry
    if entry is None:  # a dry run
        if args.json:
            _print_json({"image_ref": staged.ref, "image_digest": staged.digest, "cache_dir": str(staged.cache_dir),
                         "size_bytes": 0, "architecture": ""})
        else:
            print(f"Dry run: skipping actual download of image {staged.ref}")
        return 0
    if args.json:
        out = {"image_ref": entry.image_ref, "image_digest": entry.image_digest, "cache_dir": str(staged.cache_dir),
               "size_bytes": entry.size_bytes, "architecture": entry.architecture}
        if entry.os_release_pretty_name:
            out["os_name"] = entry.os_release_pretty_name
        if entry.verification is not None:
            out["verification"] = entry.verification.model_dump(mode="json")
        _print_json(out)
        return 0
    print("Download complete!")
    _print_entry(entry, indent="  ")
    print(f"  Cached at:    {entry.path}")
    print()
    if request.kind is CacheKind.INSTALL:
        print(f"Install it with: nbc-tui install --local-image {entry.image_digest[:19]} --device DISK")
    else:
        print("Apply it with: nbc-tui update --local-image")
    return 0


cmd_download = _guarded("failed to download image")(_download)


# -- cache list / remove / clear -----------------------------------------------------------------------

def _print_entry(entry: CachedImage, *, indent: str, with_image: bool = True) -> None:
    if with_image:
        print(f"{indent}Image:        {entry.image_ref}")
    print(f"{indent}Digest:       {entry.image_digest}")
    print(f"{indent}Architecture: {entry.architecture}")
    if entry.os_release_pretty_name:
        print(f"{indent}OS:           {entry.os_release_pretty_name}")
    print(f"{indent}Size:         {_mb(entry.size_bytes)}")
    print(f"{indent}Downloaded:   {entry.download_date}")
    print(f"{indent}Signature:    {entry.verification.describe() if entry.verification else '(not recorded)'}")


def _cache_list(args: argparse.Namespace) -> int:
    kind = CacheKind.INSTALL if args.install_images else CacheKind.UPDATE
    skipped: list[str] = []
    entries = list_cached(kind, skipped=skipped, lock_wait=args.lock_wait)
    root = cache_dir(kind)
    if args.json:
        _print_json({"cache_type": kind.value, "cache_dir": str(root),
                     "images": [e.metadata_json() for e in entries]})
        return 0
    if args.verbose:
        for why in skipped:
            _note(f"Warning: skipped {why}")
    if not entries:
        print(f"No staged {kind.value} images in {root}")
        flag = "--for-install" if kind is CacheKind.INSTALL else "--for-update"
        print(f"Stage one with: nbc-tui download --image REF {flag}")
        return 0
    print(f"Staged {kind.value} images in {root}:")
    for n, entry in enumerate(entries, start=1):
        print()
        print(f"{n}. {entry.image_ref}")
        _print_entry(entry, indent="   ", with_image=False)
    return 0


def _cache_remove(args: argparse.Namespace) -> int:
    kind = CacheKind(args.type) if args.type else None
    digest = remove_cached(kind, args.key, lock_wait=args.lock_wait)
    if args.json:
        _print_json({"success": True, "removed": args.key, "image_digest": digest})
    else:
        print(f"Removed cached image: {digest}")
    return 0


def _cache_clear(args: argparse.Namespace) -> int:
    kind = CacheKind.INSTALL if args.install else CacheKind.UPDATE
    clear_cache(kind, lock_wait=args.lock_wait)
    if args.json:
        _print_json({"success": True, "cache_type": kind.value})
    else:
        print(f"Cleared the staged {kind.value} cache ({cache_dir(kind)})")
    return 0


cmd_cache_list = _guarded("failed to list cached images")(_cache_list)
cmd_cache_remove = _guarded("failed to remove cached image")(_cache_remove)
cmd_cache_clear = _guarded("failed to clear cache")(_cache_clear)
