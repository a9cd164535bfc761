"""A pipeline stage described without Ray: what runs, over which batches, on which resources.

Each stage of vidclust is a plain function over a batch (a dict of NumPy arrays or an Arrow
table), or a class whose instances hold a model and are called on batches; tests call them
directly. `vidclust.runtime.apply_stage` is the one place that turns a Stage into Ray Data work:
tasks for a function, an actor pool for a class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable  # a function batch -> batch (or a generator of batches), or a callable class
    batch_size: Optional[int] = None  # rows per call; None: whatever block arrives
    batch_format: str = "numpy"  # "numpy" (dict of arrays) or "pyarrow"
    kwargs: dict = field(default_factory=dict)  # keyword arguments of the function / constructor
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_mb: Optional[int] = None  # memory each task or actor reserves
    actors: Optional[tuple[int, int]] = None  # (min, max) actors of a class's pool
    initial_actors: Optional[int] = None  # actors started at once (None: min)
    restart_actors: bool = True  # False: an actor lost with its node is not restarted (fail fast)
    concurrent_calls: int = 1  # calls an actor runs at once, each in a thread of its own

    @property
    def is_actor(self) -> bool:
        return isinstance(self.fn, type)

    def describe(self) -> str:
        where = f"{self.num_gpus:g} GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        if self.is_actor and self.actors:
            lo, hi = self.actors
            return f"{self.name}: {lo}..{hi} actor(s), {where} each" if lo != hi else \
                f"{self.name}: {lo} actor(s), {where} each"
        return f"{self.name}: tasks, {where} each"
