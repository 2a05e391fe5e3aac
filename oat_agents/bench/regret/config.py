"""The options every testbed of the regret benchmark shares, and the method names."""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS: tuple[str, ...] = (
    "passive",
    "random",
    "offline",
    "ee_ts",
    "bai_ts",
    "ids",
    "uncertainty",
    "sea_rollout",
    "apl",
    "xpo",
)
TESTBEDS: tuple[str, ...] = ("demo", "arithmetic-wide", "linear")
# Methods whose pair is two random samples need no more candidates than that.
TWO_SAMPLE_METHODS: tuple[str, ...] = ("passive", "offline", "xpo")


@dataclass
class CommonConfig:
    """Options of every testbed (CLI flags of the same names)."""

    testbed: str = "demo"
    queries: int = 32768
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    # B: prompts (contexts) per round, each one oracle query.
    num_envs: int = 32
    # K: candidates per prompt for the methods that choose among them (2 for TWO_SAMPLE_METHODS).
    num_samples: int = 4
    eval_every: int = 2048
    rollout_fraction: float = 0.5
    apl_pool_factor: int = 4
    out: str = "runs/regret_bench"
    threads: int = 1
    workers: int = 2

    def __post_init__(self) -> None:
        if self.testbed not in TESTBEDS:
            raise ValueError(f"unknown testbed {self.testbed!r}; choose from {TESTBEDS}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
        if self.queries < self.num_envs:
            raise ValueError(f"queries ({self.queries}) must be at least num_envs ({self.num_envs})")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.apl_pool_factor < 1:
            raise ValueError(f"apl_pool_factor must be >= 1, got {self.apl_pool_factor}")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {self.num_samples}")
