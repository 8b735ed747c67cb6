"""Benchmark (run on purpose, not a test): what checking an image's signature adds to an install from a registry.

    sudo .venv/bin/python bench/signature_bench.py [--runs 3]

The Debian test image (tests/vm/image_builder.py) is pushed to a local docker-registry on 127.0.0.1 twice:
signed by ``skopeo copy --sign-by`` (GPG, lookaside on a local directory) and with a key-based cosign signature
(tests/support/signing.py; keys made for this run). Then, alternately in the same run, ``nbc-tui install`` into
a disk-image file (ext4) with ``--insecure-skip-verify`` (no check), ``--cosign-key`` and a ``signedBy`` policy;
also the check alone, in process (``verify_pull`` on the opened image), repeated. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bytecode import compile_nbc_tui  # noqa: E402
from bench.install_bench import NBC_TUI, install  # noqa: E402
from nbc_tui.backend.image.opener import open_image  # noqa: E402
from nbc_tui.backend.runner import RunContext  # noqa: E402
from nbc_tui.backend.trust.verify import TrustSettings, verify_pull  # noqa: E402
from tests.integration.registry_fixtures import RegistryServer, free_port  # noqa: E402
from tests.support.signing import CosignSigner, GpgSigner, write_policy, write_registries_d  # noqa: E402
from tests.vm.image_builder import build_debian_image  # noqa: E402


def manifest_digest(ref: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


def check_alone(ref: str, settings: TrustSettings, runs: int) -> float:
    """Median seconds of the signature check by itself, on an image opened once per run."""
    seconds = []
    for _ in range(runs):
        with open_image(ref) as source:
            started = time.monotonic()
            verification = verify_pull(source, settings, ctx=RunContext(), warn=lambda _w: None)
            seconds.append(time.monotonic() - started)
            assert verification.verified, verification
    return statistics.median(seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    compile_nbc_tui()
    layout = build_debian_image()
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="nbc-bench-sig-") as d:
        work = Path(d)
        server = RegistryServer(work, work / "storage", free_port())
        server.start()
        gpg = GpgSigner.create(work / "gpg")
        try:
            lookaside = work / "lookaside"
            gpg.push_signed(server.host, f"oci:{layout}:latest", "bench/gpg:12", lookaside)
            gpg_ref = f"{server.host}/bench/gpg:12"
            cosign_ref = f"{server.host}/bench/cosign:12"
            subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:latest",
                            f"docker://{cosign_ref}"], check=True, capture_output=True)
            cosign = CosignSigner.create(work / "cosign")
            cosign.push_signature(server.host, "bench/cosign", manifest_digest(cosign_ref),
                                  docker_reference=f"{server.host}/bench/cosign")
            policy = write_policy(work / "policy.json", {"default": [{"type": "signedBy", "keyType": "GPGKeys",
                                                                      "keyPath": str(gpg.public_key)}]})
            regd = write_registries_d(work / "registries.d", lookaside)
            env = {**os.environ, "NBC_TUI_CACHE_ROOT": str(work / "cache"), "NBC_TUI_LOCK_DIR": str(work / "locks"),
                   "NBC_TUI_LOG_FILE": str(work / "nbc.log")}
            ways = {
                "no check (--insecure-skip-verify)": (cosign_ref, ["--insecure-skip-verify"]),
                "cosign (--cosign-key)": (cosign_ref, ["--cosign-key", str(cosign.public_pem)]),
                "GPG (signedBy policy)": (gpg_ref, ["--signature-policy", str(policy), "--registries.d", str(regd)]),
            }
            walls: dict[str, list[float]] = {name: [] for name in ways}
            for i in range(args.runs):
                for name, (ref, flags) in ways.items():
                    walls[name].append(install(ref, work, env, extra=flags)[0])
                print(f"run {i + 1}: " + ", ".join(f"{n} {w[-1]:.1f} s" for n, w in walls.items()), flush=True)
            alone = {
                "cosign": check_alone(cosign_ref, TrustSettings(cosign_key=cosign.public_pem), args.runs * 3),
                "GPG": check_alone(gpg_ref, TrustSettings(signature_policy=policy, registries_d=regd), args.runs * 3),
            }
        finally:
            gpg.close()
            server.stop()
    base = statistics.median(walls["no check (--insecure-skip-verify)"])
    print(f"\nMedians of {args.runs} installs from the registry (disk-image file, ext4), {NBC_TUI}:")
    for name, w in walls.items():
        m = statistics.median(w)
        print(f"  {name:38} {m:6.2f} s = {m / base:.3f}x ({m - base:+.2f} s)")
    print(f"The check alone (median of {args.runs * 3}, image already opened): "
          + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in alone.items()))


if __name__ == "__main__":
    main()
