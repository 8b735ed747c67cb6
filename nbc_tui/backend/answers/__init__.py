"""Answer files: the :class:`~nbc_tui.backend.plan.InstallPlan` written in TOML (JSON accepted), read with
errors that point at a line (:mod:`.load`, :mod:`.lines`, :mod:`.problems`), written back with comments
(:mod:`.writer`), checked against this machine before anything is touched (:mod:`.check`), and found on the
kernel command line of a live system (:mod:`.sources`). The format itself is :mod:`.format`.

The file is exactly the plan (``version = 1``, unknown keys refused). Two things are stricter than the
model: ``version`` must be written, and secrets are never inline (``passphrase``, ``root_password``): a
file that anyone may copy around must not carry them; it names a file holding them instead. Relative
paths in the file are taken relative to the file's own directory (so answers and their secret files can
travel together, e.g. on a labelled USB partition).
"""

from __future__ import annotations

from .check import Checked, check_answers, keyed_engine_errors, preflight_loc
from .format import answers_json_schema, schema_text
from .load import AnswerFile, load_answers, parse_answers, read_answers
from .problems import AnswerFileError, Problem
from .writer import dump_answers, save_answers

__all__ = ["AnswerFile", "AnswerFileError", "Checked", "Problem", "answers_json_schema", "check_answers",
           "dump_answers", "keyed_engine_errors", "load_answers", "parse_answers", "preflight_loc", "read_answers",
           "save_answers", "schema_text"]
