"""Widgets of the full-screen installer, one per module (DiskTable in disk_table.py, ...)."""
