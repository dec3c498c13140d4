"""``slowtoy``: :mod:`exp_toy` (tests/exp_toy.py) whose quick settings sleep 0.2 s after each of 40 chunks (about
8 s), so a test can signal ``blojax reproduce`` while its child runs. Test fixture only."""

import dataclasses

from exp_toy import DESCRIPTION, Result, plot, run  # noqa: F401 - the experiment contract
from exp_toy import Config as _Config


@dataclasses.dataclass(frozen=True)
class Config(_Config):
    @classmethod
    def quick(cls):
        return cls(steps=400, chunk_delay=0.2)
