"""``nanexp``: an experiment whose result holds a NaN among finite numbers (test fixture only)."""

import dataclasses

DESCRIPTION = "test experiment reporting a NaN"


@dataclasses.dataclass(frozen=True)
class Config:
    value: float = 1.0

    def validate(self):
        pass

    @classmethod
    def quick(cls):
        return cls()


@dataclasses.dataclass
class Result:
    value: float

    def to_dict(self):
        return {"finite": self.value, "gap": float("nan"), "curve": [1.0, float("inf")]}


def run(config, ctx=None):
    return Result(config.value)


def plot(result, out_dir):
    return []
