"""The step driver every operation runs on (:mod:`.steps`)."""

from __future__ import annotations

from .steps import Finished, Step, StepContext, Timings, When, run_steps, system_lock_step

__all__ = ["Finished", "Step", "StepContext", "Timings", "When", "run_steps", "system_lock_step"]
