"""What a benchmark reports, and the run-wide settings every benchmark reads."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console


@dataclass
class Metric:
    """One figure. ``met`` is None without a target (or when skipped); a figure measured with
    errors (non-2xx answers, broken connections) never meets its target."""

    name: str
    value: float | None
    unit: str
    target: float | None = None
    direction: Literal[">=", "<="] = ">="
    errors: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    skipped: str = ""

    @property
    def met(self) -> bool | None:
        if self.skipped or self.value is None or self.target is None:
            return None
        ok = self.value >= self.target if self.direction == ">=" else self.value <= self.target
        return ok and self.errors == 0

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.errors:
            return f"ERRORS ({self.errors})"
        return {None: "-", True: "met", False: "MISSED"}[self.met]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": self.value,
            "unit": self.unit,
            "target": f"{self.direction} {self.target:g}" if self.target is not None else None,
            "met": self.met,
            "errors": self.errors,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.note:
            out["note"] = self.note
        out["details"] = self.details
        return out


@dataclass
class Settings:
    """Durations and sizes for one run (``--quick`` or full)."""

    mode: Literal["quick", "full"]
    #: Seconds of measured load per catalog server per round, and rounds (alternating servers).
    catalog_seconds: float
    catalog_rounds: int
    warmup_seconds: float
    connections: int
    #: Seconds of measured checkout load per backend, and concurrent clients.
    checkout_seconds: float
    checkout_clients: int
    sequential_runs: int
    #: Products loaded for the memory benchmark.
    rss_products: int
    #: Products in the catalog and checkout stores (a page is 20; checkout buys from the first 64).
    catalog_products: int = 1_000

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                mode="quick",
                catalog_seconds=4,
                catalog_rounds=2,
                warmup_seconds=1,
                connections=32,
                checkout_seconds=6,
                checkout_clients=20,
                sequential_runs=100,
                rss_products=5_000,
                catalog_products=200,
            )
        return cls(
            mode="full",
            catalog_seconds=10,
            catalog_rounds=3,
            warmup_seconds=2,
            connections=32,
            checkout_seconds=15,
            checkout_clients=20,
            sequential_runs=500,
            rss_products=100_000,
        )


@dataclass
class Context:
    settings: Settings
    workdir: Path
    repo_root: Path
    postgres_url: str = ""
    use_wrk: bool = True
    wrk_threads: int = 1
    console: Console = field(default_factory=lambda: Console(file=sys.stderr))

    def log(self, message: str) -> None:
        self.console.log(message)

    @property
    def log_dir(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path
