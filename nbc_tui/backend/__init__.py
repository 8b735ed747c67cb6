"""The install engine. A plain library: it never imports Textual (see tests/unit/test_import_hygiene.py)."""
