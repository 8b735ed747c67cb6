"""The log file: a fixed, documented path, secrets redacted, copied to the installed system at the end."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .runner import RedactingFilter, Redactor

DEFAULT_LOG_FILE = Path("/var/log/nbc-tui/nbc-tui.log")
# The installed system keeps a copy of the log of its install and of its last update here (on the var partition).
TARGET_LOG_DIR = Path("var/log/nbc-tui")


def log_file_path() -> Path:
    """``NBC_TUI_LOG_FILE`` overrides the path (tests, read-only live media)."""
    return Path(os.environ.get("NBC_TUI_LOG_FILE", DEFAULT_LOG_FILE))


class RunLog:
    """Attaches a redacting file handler to the ``nbc_tui`` logger for one run, remembering where the run
    starts in the file so that exactly this run's lines can be copied to the target."""

    def __init__(self, redactor: Redactor, path: Path | None = None) -> None:
        self.path = path or log_file_path()
        self.redactor = redactor
        self.handler: logging.Handler | None = None
        self.start_offset = 0

    def __enter__(self) -> RunLog:
        logger = logging.getLogger("nbc_tui")
        logger.setLevel(logging.DEBUG)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.close(fd)
            self.start_offset = self.path.stat().st_size
            handler: logging.Handler = logging.FileHandler(self.path, encoding="utf-8")
        except OSError as exc:
            print(f"Warning: cannot write the log file {self.path}: {exc}", file=sys.stderr)
            handler = logging.NullHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.addFilter(RedactingFilter(self.redactor))
        logger.addHandler(handler)
        self.handler = handler
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handler:
            logging.getLogger("nbc_tui").removeHandler(self.handler)
            self.handler.close()

    def this_run(self) -> bytes:
        if self.handler:
            self.handler.flush()
        try:
            with self.path.open("rb") as f:
                f.seek(self.start_offset)
                return f.read()
        except OSError:
            return b""
