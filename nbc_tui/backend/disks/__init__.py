"""The machine's disks: what they are, which one a plan means, and whether one can be installed to.

Everything callers need is importable from here: the models (:mod:`.model`), discovery (:mod:`.discovery`,
read by :mod:`.blockdevices`), eligibility with typed reasons (:mod:`.eligibility`), the disks of the running
system and the live medium (:mod:`.system_disks`), disk rules of answer files (:mod:`.rules`), a disk in words
(:mod:`.words`), a disk-image file as a target (:mod:`.image_file`) and hot-plug (:mod:`.hotplug`, imported on
its own: it needs pyudev).
"""

from __future__ import annotations

from .blockdevices import SYSTEM, SystemView
from .discovery import disk_id, identity_changed, list_disks, partition_name, resolve_disk, split_partition_name
from .eligibility import refusals
from .image_file import check_image_file_path, existing_file_words
from .model import Disk, Ineligible, Partition, Refusal
from .rules import SHOW_LOOP_ENV, Resolved, loops_wanted, resolve_target, rule_matches
from .system_disks import (
    LIVE_MEDIUM_MOUNTS,
    RUNNING_SYSTEM_MOUNTS,
    booted_slot,
    live_medium_disks,
    running_system_disks,
)
from .words import destruction_warning, disk_contents, disk_line, disk_summary, disk_words, partition_words

__all__ = [
    "LIVE_MEDIUM_MOUNTS",
    "RUNNING_SYSTEM_MOUNTS",
    "SHOW_LOOP_ENV",
    "SYSTEM",
    "Disk",
    "Ineligible",
    "Partition",
    "Refusal",
    "Resolved",
    "SystemView",
    "booted_slot",
    "check_image_file_path",
    "destruction_warning",
    "disk_contents",
    "disk_id",
    "disk_line",
    "disk_summary",
    "disk_words",
    "existing_file_words",
    "identity_changed",
    "list_disks",
    "live_medium_disks",
    "loops_wanted",
    "partition_name",
    "partition_words",
    "refusals",
    "resolve_disk",
    "resolve_target",
    "rule_matches",
    "running_system_disks",
    "split_partition_name",
]
