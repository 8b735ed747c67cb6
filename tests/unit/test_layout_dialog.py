"""The layout dialog's words, from the plan's Layout model (pure logic)."""

from __future__ import annotations

from nbc_tui.backend.plan import Layout
from nbc_tui.backend.sizes import GiB
from nbc_tui.widgets.layout_dialog import FitTarget, fit_words, read_sizes

SMALL = {"esp_size": "256M", "root_size": "2G", "var_min_size": "512M"}


def test_read_sizes_takes_the_answer_files_sizes_and_says_what_is_wrong() -> None:
    assert read_sizes(SMALL) == Layout.model_validate(SMALL)
    assert read_sizes({**SMALL, "root_size": "2"}) == "Each root slot: give a unit, like 512M or 2G"
    assert read_sizes({**SMALL, "esp_size": "1M"}) == "ESP: must be at least 64.0 MB (64M)"
    assert "is not a size" in str(read_sizes({**SMALL, "var_min_size": "lots"}))


def test_fit_words_say_what_var_gets_or_how_much_is_missing() -> None:
    layout = Layout.model_validate(SMALL)
    assert fit_words(layout, None) == ("Needs 4.8 GB; a disk-image file of 5 GiB.", True)
    words, fits = fit_words(layout, FitTarget("a disk-image file of 5 GiB", 5 * GiB))
    assert fits and words.endswith("On a disk-image file of 5 GiB: /var gets 766.0 MB.")
    words, fits = fit_words(layout, FitTarget("/dev/sdb (4.0 GB)", 4 * GiB))
    assert not fits and words.endswith("Does not fit on /dev/sdb (4.0 GB): 770.0 MB short.")
