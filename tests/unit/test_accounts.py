"""Account files across an update: the image's new entries and the installed system's own, merged."""

from __future__ import annotations

import logging
import re

import pytest
from pydantic import SecretStr

from nbc_tui.backend.runner import REDACTED, RunContext
from nbc_tui.backend.system.accounts import merge_accounts
from nbc_tui.backend.system.rootfs import hash_password

IMAGE_PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
_v2svc:x:998:998:added by v2:/nonexistent:/usr/sbin/nologin
"""
LOCAL_PASSWD = """root:x:0:0:root:/root:/bin/zsh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
"""


def test_passwd_keeps_local_entries_and_adds_the_images_new_ones() -> None:
    merged = merge_accounts("passwd", LOCAL_PASSWD, IMAGE_PASSWD).text.splitlines()
    assert merged == [
        "root:x:0:0:root:/root:/bin/zsh",  # the installed system's fields win
        "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
        "_v2svc:x:998:998:added by v2:/nonexistent:/usr/sbin/nologin",  # new in the image
        "alice:x:1000:1000:Alice:/home/alice:/bin/bash",  # only local: kept, after the image's
    ]


def test_shadow_keeps_the_local_password_hash() -> None:
    local = "root:$y$j9T$local$hash:19000:0:99999:7:::\n"
    image = "root:*:19000:0:99999:7:::\n_v2svc:!:19500::::::\n"
    merged = merge_accounts("shadow", local, image)
    assert merged.text == "root:$y$j9T$local$hash:19000:0:99999:7:::\n_v2svc:!:19500::::::\n"


def test_group_members_are_the_union_of_both() -> None:
    local = "sudo:x:27:alice\nusers:x:100:\n"
    image = "sudo:x:27:bob,alice\nusers:x:100:\n_v2svc:x:998:\n"
    assert merge_accounts("group", local, image).text.splitlines() == ["sudo:x:27:alice,bob", "users:x:100:",
                                                                  "_v2svc:x:998:"]
    local_gs = "sudo:*::alice\n"
    image_gs = "sudo:*::carol\n"
    assert merge_accounts("gshadow", local_gs, image_gs).text == "sudo:*::alice,carol\n"


def test_what_this_system_removed_from_the_running_image_stays_removed() -> None:
    running = "root:x:0:0::/root:/bin/sh\nadmin:x:1001:1001::/home/admin:/bin/sh\n"
    installed = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/bash\n"  # userdel admin
    image = running + "_v2svc:x:998:998::/:/usr/sbin/nologin\n"
    assert merge_accounts("passwd", installed, image, running).text.splitlines() == [
        "root:x:0:0::/root:/bin/sh", "_v2svc:x:998:998::/:/usr/sbin/nologin",  # new in the image: added
        "alice:x:1000:1000::/home/alice:/bin/bash"]
    running_groups = "sudo:x:27:admin\nusers:x:100:\n"
    installed_groups = "sudo:x:27:alice\nusers:x:100:\n"  # admin left sudo, alice joined
    image_groups = "sudo:x:27:admin,ops\nusers:x:100:\n"  # ops: a member new in the image
    assert merge_accounts("group", installed_groups, image_groups, running_groups).text.splitlines() == [
        "sudo:x:27:alice,ops", "users:x:100:"]
    # Without the running image's file (unreadable), nothing can be told removed: the image's entries return.
    assert "admin:x:1001" in merge_accounts("passwd", installed, image).text


def test_blank_lines_comments_and_repeats_are_dropped_and_the_result_ends_in_a_newline() -> None:
    local = "# local\nroot:x:0:0::/root:/bin/sh\nroot:x:0:0:again:/root:/bin/false\n\n"
    assert merge_accounts("passwd", local, "").text == "root:x:0:0::/root:/bin/sh\n"
    assert merge_accounts("passwd", "", "").text == ""


def test_a_short_group_line_keeps_the_local_one() -> None:
    assert merge_accounts("group", "odd:x\n", "odd:x:5:bob\n").text == "odd:x\n"


def test_an_account_the_image_renumbers_keeps_this_systems_numbers_and_says_so() -> None:
    local = "root:x:0:0::/root:/bin/zsh\nsystemd-network:x:998:998::/:/usr/sbin/nologin\n"
    image = "root:x:0:0::/root:/bin/bash\nsystemd-network:x:997:997::/:/usr/sbin/nologin\n_v2:x:998:998::/:/bin/false\n"
    merged = merge_accounts("passwd", local, image)
    assert merged.text.splitlines() == ["root:x:0:0::/root:/bin/zsh", "systemd-network:x:998:998::/:/usr/sbin/nologin",
                                        "_v2:x:998:998::/:/bin/false"]
    assert "/etc/passwd: the new image gives systemd-network UID 997, this system keeps 998" in merged.notes[0]
    assert merged.notes[-1] == "/etc/passwd: UID 998 now belongs to both systemd-network and _v2"


def test_a_number_two_accounts_share_is_reported() -> None:
    local = "alice:x:1000:1000::/home/alice:/bin/bash\n"
    image = "builder:x:1000:1000::/home/builder:/bin/sh\n"
    merged = merge_accounts("passwd", local, image)
    assert merged.notes == ["/etc/passwd: UID 1000 now belongs to both builder and alice"]


def test_a_password_hash_made_here_reaches_no_log_line_and_no_output_hook(
        caplog: pytest.LogCaptureFixture) -> None:
    """openssl prints the hash; the runner logs a tool's output as it comes, before the hash is known, and
    the hash can be attacked offline: it is masked by its shape, and the output hook (--verbose, the TUI's
    log pane) never sees it. The real openssl runs."""
    shown: list[str] = []
    ctx = RunContext(on_output=shown.append)
    with caplog.at_level(logging.DEBUG, logger="nbc_tui"):
        hashed = hash_password(SecretStr("Hash-Me-Not-42"), ctx=ctx)
    assert re.fullmatch(r"\$6\$[^$]+\$[./0-9A-Za-z]{86}", hashed), hashed
    assert "openssl passwd -6 -stdin" in caplog.text and REDACTED in caplog.text
    assert hashed not in caplog.text and shown == []
    assert ctx.redactor(f"later: {hashed}") == f"later: {REDACTED}"


def test_subordinate_ids_keep_every_range_of_a_user() -> None:
    """useradd at install gave alice her range in the slot's /etc; a user may hold several."""
    installed = "alice:100000:65536\nalice:300000:65536\n"
    assert merge_accounts("subuid", installed, "").text == installed
    assert merge_accounts("subgid", installed, "builder:200000:65536\n").text == (
        "builder:200000:65536\n" + installed)
