from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nbc_tui.backend.plan import InstallPlan, Layout, Target, validation_messages
from nbc_tui.backend.sizes import GiB, MiB, gib_up, human, parse_size, short_size


@pytest.mark.parametrize(("text", "expected"), [
    ("2G", 2 * GiB), ("2GiB", 2 * GiB), ("2gb", 2 * GiB), ("512M", 512 * MiB), ("1.5G", 3 * GiB // 2),
    ("4096", 4096), (7, 7),
])
def test_parse_size(text, expected) -> None:
    assert parse_size(text) == expected


def test_parse_size_default_unit_and_errors() -> None:
    assert parse_size("35", default_unit="G") == 35 * GiB
    with pytest.raises(ValueError, match="not a size"):
        parse_size("two gigs")


def test_human_is_nbcs_format() -> None:
    assert human(238475288576) == "222.1 GB"
    assert human(512) == "512 B"
    assert human(2 * GiB) == "2.0 GB"


def test_defaults_are_nbcs() -> None:
    layout = Layout()
    assert (layout.esp_size, layout.root_size, layout.filesystem) == (2 * GiB, 12 * GiB, "btrfs")
    assert layout.min_disk_size == 2 * MiB + 2 * GiB + 24 * GiB + 4 * GiB


def test_plan_is_strict_and_frozen() -> None:
    plan = InstallPlan(image={"ref": "oci:/x"}, target={"device": "/dev/sdz"})
    with pytest.raises(ValidationError):
        plan.layout = Layout()  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        InstallPlan(image={"ref": "oci:/x"}, target={"device": "/dev/sdz"}, colour="red")


def test_target_needs_exactly_one() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        Target()
    with pytest.raises(ValidationError, match="exactly one"):
        Target(device=Path("/dev/sdz"), image_file=Path("/tmp/x.img"))


def test_image_file_must_fit_layout() -> None:
    with pytest.raises(ValidationError, match="smaller than the layout needs"):
        InstallPlan(image={"ref": "oci:/x"}, target={"image_file": "/tmp/x.img", "image_size": "20G"})
    ok = InstallPlan(image={"ref": "oci:/x"}, target={"image_file": "/tmp/x.img", "image_size": "3G"},
                     layout={"esp_size": "100M", "root_size": "1G", "var_min_size": "256M"})
    assert ok.target.image_size == 3 * GiB


def test_layout_minimums() -> None:
    with pytest.raises(ValidationError):
        Layout(root_size="100M")


def test_validation_errors_read_as_sentences_without_pydantics_prefix() -> None:
    with pytest.raises(ValidationError) as info:
        InstallPlan.model_validate({"image": {"ref": "x"}, "target": {}, "layout": {"root_size": "1M"}})
    lines = validation_messages(info.value)
    assert "target: give exactly one of a device, disk rules (match) or a disk-image file" in lines
    assert any(line.startswith("layout.root_size: ") for line in lines)
    assert not any("Value error" in line for line in lines)


def test_short_sizes_are_exact_and_read_back() -> None:
    for size, text in ((2 * GiB, "2G"), (512 * MiB, "512M"), (1536 * MiB, "1536M"), (4 << 40, "4T"), (1000, "1000")):
        assert short_size(size) == text and parse_size(text) == size
    assert (gib_up(1), gib_up(GiB), gib_up(GiB + 1)) == (1, 1, 2)


def test_what_var_gets_and_the_floor_in_words() -> None:
    layout = Layout(esp_size=256 * MiB, root_size=2 * GiB, var_min_size=512 * MiB)
    assert layout.min_disk_size == 2 * MiB + 256 * MiB + 4 * GiB + 512 * MiB
    assert layout.var_size_on(layout.min_disk_size) == layout.var_min_size  # just fits
    assert layout.var_size_on(8 * GiB) == 8 * GiB - 2 * MiB - 256 * MiB - 4 * GiB
    with pytest.raises(ValidationError) as raised:
        Layout.model_validate({"root_size": "100M"})
    assert validation_messages(raised.value) == ["root_size: must be at least 512.0 MB (512M)"]
