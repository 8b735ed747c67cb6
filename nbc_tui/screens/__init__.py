"""The wizard's screens, one per module: welcome, image, disk, encryption, options, review, progress, done,
and their base, wizard.py (title line, status line, Back/Continue, help, Enter and Ctrl+N to go on). Each is
a ``Screen[Result]`` that ends with ``dismiss(value)``; ``None`` means "back". Shared components (the
dialogs, the status line, the choices) are in :mod:`nbc_tui.widgets`."""
