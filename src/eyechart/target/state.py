"""What every request of the reference target shares: its configuration and the state built at startup."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eyechart.target.deployment import Deployment
from eyechart.target.engine import Engine
from eyechart.target.faults import FaultConfig, FaultInjector
from eyechart.target.fetch import Fetcher
from eyechart.target.prom import Metrics
from eyechart.target.trace import TraceWriter


@dataclass(frozen=True)
class ServeConfig:
    deployment: Deployment  # the model (with its served id) on its GPUs, as --speed and the limits set it
    api_key: str
    allow_private_urls: bool = False
    faults: FaultConfig = field(default_factory=FaultConfig)
    trace_path: Path | None = None
    max_waiting: int | None = None


class TargetState:
    """Everything a request needs, created at startup and closed at shutdown."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.profile = config.deployment.model
        self.deployment = config.deployment
        self.engine = Engine(config.deployment, config.max_waiting)
        self.metrics = Metrics()
        self.faults = FaultInjector(config.faults)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="eyechart-vision")
        self.fetcher: Fetcher | None = None
        self.trace: TraceWriter | None = None

    async def start(self) -> None:
        self.fetcher = Fetcher(allow_private=self.config.allow_private_urls)
        if self.config.trace_path is not None:
            self.trace = TraceWriter(self.config.trace_path, model=self.profile.model_id)

    async def stop(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.aclose()
        if self.trace is not None:
            self.trace.close()
        await self.engine.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def record(self, rec: dict[str, Any]) -> None:
        if self.trace is not None:
            self.trace.record(rec)
