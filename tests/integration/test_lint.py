"""`nbc-tui lint` run as users run it: real images from every kind of source, nbc's JSON keys, the exit codes,
the refusals, and `--local [--fix]` on a throwaway root of this machine (an overlay of / inside a private mount
namespace), where the CLI decides from the container markers it finds itself."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO, CliResult
from tests.integration.podman_fixtures import GZ_IMAGE
from tests.support.oci import ImageSpec, Layer, TarBuilder, flip_byte, write_layout
from tests.support.synthetic import KVER, base_layer, cpio_gz, make_image, second_layer

if TYPE_CHECKING:
    from tests.integration.registry_fixtures import RegistryServer

# nbc's keys in nbc's order (reference §14.4, pkg/types LintOutput); "hint" is ours, added last.
REPORT_KEYS = ["image", "local", "issues", "error_count", "warning_count", "fixed_count", "success"]
ISSUE_KEYS = ["check", "severity", "message", "path", "fixed", "hint"]
HOST_KEY, MACHINE_ID = b"-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n", b"3d1219c7c4c5404aaa1f6d2a48adfda4\n"


def first_boot_layer() -> bytes:
    """What a careless image build leaves: host keys, the build machine's id, a random seed."""
    return (TarBuilder().dir("etc").dir("etc/ssh").file("etc/ssh/ssh_host_ed25519_key", HOST_KEY, mode=0o600)
            .file("etc/ssh/ssh_host_ed25519_key.pub", b"ssh-ed25519 AAAA root@build\n")
            .file("etc/machine-id", MACHINE_ID).dir("var").dir("var/lib").dir("var/lib/systemd")
            .file("var/lib/systemd/random-seed", os.urandom(512), mode=0o600).bytes())


def seed_only_layer() -> bytes:
    return TarBuilder().dir("var").dir("var/lib").file("var/lib/random-seed", b"\x01" * 512).bytes()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("lint")
    refs = {
        "clean": make_image(d / "clean"),
        "no-kernel": make_image(d / "no-kernel", kernel=False),
        "no-module-no-dracut": make_image(d / "no-module", initramfs_has_module=False),
    }
    write_layout(d / "careless", [ImageSpec([Layer(base_layer()), Layer(second_layer(), "zstd"),
                                             Layer(first_boot_layer(), "gzip")])])
    refs["careless"] = f"oci:{d / 'careless'}:latest"
    # only warnings: a random seed, no bootloader binary, an initramfs that cannot unlock
    write_layout(d / "warnings", [ImageSpec([Layer(base_layer(systemd_boot=False, initramfs_unlocks=False)),
                                             Layer(seed_only_layer(), "tar")])])
    refs["warnings"] = f"oci:{d / 'warnings'}:latest"
    corrupt = make_image(d / "corrupt")
    manifest = json.loads((d / "corrupt/index.json").read_text())["manifests"][0]["digest"]
    layers = json.loads((d / "corrupt/blobs/sha256" / manifest.split(":")[1]).read_text())["layers"]
    flip_byte(d / "corrupt", layers[0]["digest"])
    refs["corrupt-blob"] = corrupt
    hostile = TarBuilder().symlink("escape", "/tmp").file("escape/owned", b"x").bytes()
    write_layout(d / "hostile", [ImageSpec([Layer(base_layer()), Layer(hostile, "tar")])])
    refs["escaping-layer"] = f"oci:{d / 'hostile'}:latest"
    with tarfile.open(d / "careless.tar", "w") as archive:
        archive.add(d / "careless", arcname=".")
    refs["careless-archive"] = f"oci-archive:{d / 'careless.tar'}:latest"
    return refs


def lint_json(nbc, *args: str) -> tuple[int, dict]:
    r = nbc("lint", "--json", *args)
    out = json.loads(r.stdout)  # exactly one object: anything else on stdout fails here
    assert list(out) == [k for k in REPORT_KEYS if k in out], list(out)
    for issue in out["issues"]:
        assert list(issue) == [k for k in ISSUE_KEYS if k in issue], list(issue)
        assert issue["severity"] in ("error", "warning") and issue.get("fixed", True) is True
    assert out["success"] == (out["error_count"] == 0)
    return r.returncode, out


def test_a_clean_image(nbc, images: dict[str, str]) -> None:
    r = nbc("lint", images["clean"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"Linting container image: {images['clean']}\n\n✓ No issues found\n"
    rc, out = lint_json(nbc, images["clean"])
    assert rc == 0
    assert out == {"image": images["clean"], "issues": [], "error_count": 0, "warning_count": 0, "success": True}


@pytest.mark.parametrize("which", ["careless", "careless-archive"])
def test_first_boot_files_are_errors_and_nbc_keys_are_kept(nbc, images: dict[str, str], which: str) -> None:
    rc, out = lint_json(nbc, images[which])
    assert rc == 1
    assert out["image"] == images[which] and "local" not in out and "fixed_count" not in out
    assert [(i["check"], i["severity"], i["path"]) for i in out["issues"]] == [
        ("ssh-host-keys", "error", "/etc/ssh/ssh_host_ed25519_key"),
        ("ssh-host-keys", "error", "/etc/ssh/ssh_host_ed25519_key.pub"),
        ("machine-id", "error", "/etc/machine-id"),
        ("random-seed", "warning", "/var/lib/systemd/random-seed"),
    ]
    assert "(3d1219c7...)" in out["issues"][2]["message"]
    assert (out["error_count"], out["warning_count"], out["success"]) == (3, 1, False)

    r = nbc("lint", images[which])
    assert r.returncode == 1
    assert "  [ERROR] /etc/ssh/ssh_host_ed25519_key: SSH host key found in image" in r.stdout
    assert "  [WARN ] /var/lib/systemd/random-seed: Random seed file found" in r.stdout
    assert "\nSummary: 3 error(s), 1 warning(s)\n" in r.stdout
    assert r.stdout.rstrip().endswith("  nbc-tui lint --local --fix")
    assert r.stderr == ""


def test_warnings_alone_exit_0(nbc, images: dict[str, str]) -> None:
    rc, out = lint_json(nbc, images["warnings"])
    assert rc == 0 and out["success"] and out["error_count"] == 0
    assert [(i["check"], i["severity"]) for i in out["issues"]] == [
        ("random-seed", "warning"), ("unlock-support", "warning"), ("bootloader", "warning")]
    unlock, bootloader = out["issues"][1]["message"], out["issues"][2]["message"]
    assert "would be refused, one without is fine" in unlock
    assert "falls back to the installing machine's GRUB" in bootloader
    r = nbc("lint", images["warnings"])
    assert r.returncode == 0 and "Summary: 3 warning(s)" in r.stdout and "--fix" not in r.stdout


@pytest.mark.parametrize(("case", "check", "needle"), [
    ("no-kernel", "kernel", "has no kernel"),           # the install refuses these with the same words
    ("no-module-no-dracut", "etc-overlay", "no dracut"),
])
def test_what_an_install_refuses_is_an_error(nbc, images: dict[str, str], case: str, check: str,
                                             needle: str) -> None:
    rc, out = lint_json(nbc, images[case])
    assert rc == 1
    errors = [i for i in out["issues"] if i["severity"] == "error"]
    assert [i["check"] for i in errors] == [check] and needle in errors[0]["message"]
    assert errors[0]["message"].startswith(f"the image {images[case]} ")
    r = nbc("lint", images[case])
    assert r.returncode == 1 and needle in r.stdout
    assert "--fix" not in r.stdout  # --fix cannot add a kernel: no hint to run it


@pytest.mark.parametrize(("case", "needle"), [("corrupt-blob", "sha256:"), ("escaping-layer", "escape")])
def test_an_image_that_cannot_be_read_whole(nbc, images: dict[str, str], case: str, needle: str) -> None:
    rc, out = lint_json(nbc, images[case])
    assert rc == 1
    assert out["image"] == images[case] and out["error_count"] == 1 and out["warning_count"] == 0
    assert [(i["check"], i["severity"]) for i in out["issues"]] == [("extraction", "error")]
    assert needle in out["issues"][0]["message"]
    r = nbc("lint", images[case])
    assert r.returncode == 1
    assert r.stderr.startswith("Error: ") and needle in r.stderr
    assert r.stdout == f"Linting container image: {images[case]}\n"


def test_a_reference_that_names_nothing(nbc, tmp_path: Path) -> None:
    rc, out = lint_json(nbc, f"oci:{tmp_path / 'missing'}")
    assert rc == 2 and [i["check"] for i in out["issues"]] == ["extraction"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--local", "oci:/x"], "not both"),
    ([], "an IMAGE is required"),
    (["--fix", "oci:/x"], "--fix works only with --local"),
    (["--json"], "an IMAGE is required"),
])
def test_bad_arguments_exit_2(nbc, args: list[str], needle: str) -> None:
    r = nbc("lint", *args)
    assert r.returncode == 2 and needle in r.stderr and r.stdout == ""


# -- every source opens, and is closed ---------------------------------------------------------------------

@pytest.mark.root
def test_an_image_in_a_registry(nbc, registry: RegistryServer, images: dict[str, str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    ref = registry.push(images["careless"], "nbc/careless:1")
    rc, out = lint_json(nbc, ref)
    assert rc == 1 and out["image"] == ref and out["error_count"] == 3


@pytest.mark.root
def test_an_image_of_the_local_podman(nbc, podman_images, podman_socket: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBC_TUI_PODMAN_SOCKET", podman_socket)
    rc, out = lint_json(nbc, GZ_IMAGE)
    assert rc == 0 and out == {"image": GZ_IMAGE, "issues": [], "error_count": 0, "warning_count": 0,
                               "success": True}
    spools = Path("/var/tmp/nbc-tui")
    assert not spools.exists() or not any(spools.iterdir()), "the daemon's export was not cleaned up"


# -- --local on a throwaway root -----------------------------------------------------------------------------

COLLECTED = ("etc/ssh", "etc/machine-id", "var/lib/systemd/random-seed", "var/lib/random-seed")
# What the overlay starts without, whatever this machine has: its own first-boot files, container markers
# and kernels, so that only the test's files decide.
HIDDEN = (".dockerenv", "run/.containerenv", "etc/ssh/ssh_host_*", "etc/machine-id", "usr/lib/modules",
          *COLLECTED[2:])
THROWAWAY_ROOT = r"""
set -e
mount -t tmpfs nbc-lint-test "$S"
mkdir "$S/upper" "$S/work" "$S/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$S/upper,workdir=$S/work" "$S/root"
for d in proc dev sys; do mount --rbind "/$d" "$S/root/$d"; done
for d in $BINDS; do mkdir -p "$S/root$d"; mount --rbind "$d" "$S/root$d"; done
cd "$S/root"
for p in $HIDDEN; do rm -rf ./$p; done
tar -xf "$SEED"
rc=0
chroot "$S/root" "$PYTHON" -m nbc_tui.cli lint "$@" >"$OUT/stdout" 2>"$OUT/stderr" || rc=$?
echo "$rc" >"$OUT/rc"
mkdir "$OUT/after"
for p in $COLLECTED; do if [ -e "$p" ] || [ -L "$p" ]; then cp -a --parents "$p" "$OUT/after/"; fi; done
"""


def seed_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600 if "ssh_host" in name else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bootable_files() -> dict[str, bytes]:
    """A kernel whose initramfs has the etc-overlay hook: no error but the test's own."""
    hook = "usr/lib/dracut/hooks/pre-pivot/50-etc-overlay-mount.sh"
    return {f"usr/lib/modules/{KVER}/vmlinuz": b"MZ kernel",
            f"usr/lib/modules/{KVER}/initramfs.img": cpio_gz({"init": b"#!/bin/sh\n", hook: b"# stand-in\n"})}


def lint_in_throwaway_root(tmp_path: Path, *args: str, files: dict[str, bytes]) -> tuple[CliResult, Path]:
    """Run the real CLI chrooted into an overlay of this machine's root holding ``files`` (paths relative to /),
    in a private mount namespace: nothing reaches the machine. Returns the result and a copy of COLLECTED
    as the run left them."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    out.mkdir(parents=True)
    scratch.mkdir()
    (tmp_path / "seed.tar").write_bytes(seed_tar(files))
    # The interpreter and the code may live on other mounts than /, which an overlay does not include.
    binds = sorted({str(REPO), sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)})
    env = {**os.environ, "S": str(scratch), "OUT": str(out), "SEED": str(tmp_path / "seed.tar"),
           "PYTHON": sys.executable, "BINDS": " ".join(binds), "HIDDEN": " ".join(HIDDEN),
           "COLLECTED": " ".join(COLLECTED), "PYTHONPATH": str(REPO), "NBC_TUI_LOG_FILE": "/tmp/nbc-tui-lint.log"}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", THROWAWAY_ROOT, "sh",
                           *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = CliResult(int((out / "rc").read_text()), (out / "stdout").read_text(), (out / "stderr").read_text())
    return result, out / "after"


needs_unshare = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
CARELESS_FILES = {"etc/ssh/ssh_host_ed25519_key": HOST_KEY, "etc/ssh/ssh_host_ed25519_key.pub": b"ssh-ed25519 A\n",
                  "etc/machine-id": MACHINE_ID, "var/lib/systemd/random-seed": b"\x07" * 512}


@pytest.mark.root
@needs_unshare
def test_local_lints_the_root_it_runs_in(tmp_path: Path) -> None:
    files = {**bootable_files(), **CARELESS_FILES, "run/.containerenv": b""}
    r, after = lint_in_throwaway_root(tmp_path, "--local", "--json", files=files)
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert list(out)[:2] == ["local", "issues"] and out["local"] is True and "image" not in out
    assert [(i["check"], i["path"]) for i in out["issues"] if i["severity"] == "error"] == [
        ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key"), ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key.pub"),
        ("machine-id", "/etc/machine-id")]
    assert out["error_count"] == 3 and "fixed_count" not in out
    assert (after / "etc/machine-id").read_bytes() == MACHINE_ID  # linting alone changes nothing
    assert (after / "etc/ssh/ssh_host_ed25519_key").read_bytes() == HOST_KEY


@pytest.mark.root
@needs_unshare
@pytest.mark.parametrize("marker", ["run/.containerenv", ".dockerenv"])
def test_local_fix_inside_a_container(tmp_path: Path, marker: str) -> None:
    files = {**bootable_files(), **CARELESS_FILES, marker: b""}
    r, after = lint_in_throwaway_root(tmp_path, "--local", "--fix", "--json", files=files)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    fixed = [i for i in out["issues"] if i.get("fixed")]
    assert [(i["check"], i["path"]) for i in fixed] == [
        ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key"), ("ssh-host-keys", "/etc/ssh/ssh_host_ed25519_key.pub"),
        ("machine-id", "/etc/machine-id"), ("random-seed", "/var/lib/systemd/random-seed")]
    assert fixed[2]["message"] == "machine-id truncated to empty (will be regenerated at first boot)"
    assert (out["fixed_count"], out["error_count"], out["success"]) == (4, 0, True)
    assert not list((after / "etc/ssh").glob("ssh_host_*"))
    assert (after / "etc/machine-id").read_bytes() == b""
    assert not (after / "var/lib/systemd/random-seed").exists()

    r, _ = lint_in_throwaway_root(tmp_path / "text", "--local", "--fix", files=files)
    assert r.returncode == 0
    assert r.stdout.startswith("Linting and fixing current filesystem...\n\nIssues found:\n")
    assert "  [FIXED] /etc/machine-id: machine-id truncated to empty" in r.stdout
    assert "Summary: " in r.stdout and "4 fixed" in r.stdout and "error" not in r.stdout.split("Summary: ")[1]


@pytest.mark.root
@needs_unshare
def test_local_fix_outside_a_container_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    files = {**bootable_files(), **CARELESS_FILES}  # no marker
    r, after = lint_in_throwaway_root(tmp_path, "--local", "--fix", files=files)
    assert r.returncode == 2
    assert "only inside a container" in r.stderr and r.stdout == ""
    assert (after / "etc/machine-id").read_bytes() == MACHINE_ID
    assert (after / "etc/ssh/ssh_host_ed25519_key").read_bytes() == HOST_KEY
    assert (after / "var/lib/systemd/random-seed").read_bytes() == b"\x07" * 512
