"""The capability matrix: which journey steps each enabled channel carries, and the gaps.

Channels declare their steps in ``ChannelSpec.capabilities`` (from ``register_channels``). The
matrix is the store's omnichannel maturity at a glance: a step no channel carries is a journey a
customer cannot make anywhere; a channel missing a step sends the customer elsewhere for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from omniretail.channel import Capability

if TYPE_CHECKING:
    from omniretail.kernel import Kernel

STEPS: tuple[Capability, ...] = tuple(Capability)


class ChannelRow(msgspec.Struct, frozen=True):
    name: str
    title: str
    steps: dict[str, bool]
    missing: list[str]


class Matrix(msgspec.Struct, frozen=True):
    steps: list[str]
    channels: list[ChannelRow]
    #: Steps no enabled channel carries.
    gaps: list[str]
    #: Steps only one channel carries (a single point of failure for that journey).
    single: dict[str, str]
    #: Cells carried / all cells.
    carried: int
    cells: int

    @property
    def maturity(self) -> float:
        return self.carried / self.cells if self.cells else 0.0


def capability_matrix(kernel: Kernel) -> Matrix:
    rows = []
    for name in sorted(kernel.channels):
        spec = kernel.channels[name].spec
        steps = {step.value: step in spec.capabilities for step in STEPS}
        rows.append(
            ChannelRow(name=name, title=spec.title, steps=steps, missing=[s for s, ok in steps.items() if not ok])
        )
    carriers = {step.value: [r.name for r in rows if r.steps[step.value]] for step in STEPS}
    return Matrix(
        steps=[s.value for s in STEPS],
        channels=rows,
        gaps=[s for s, who in carriers.items() if not who],
        single={s: who[0] for s, who in carriers.items() if len(who) == 1},
        carried=sum(sum(r.steps.values()) for r in rows),
        cells=len(rows) * len(STEPS),
    )
