"""Background work besides the outbox: queued jobs (e.g. a publish asked for through the API),
the plugins' periodic tasks (e.g. a marketplace order poller) and the payment recovery task
(``payments.recover``: checkouts and payment operations left in between are settled)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from omniretail.channel import PeriodicTask
from omniretail.host import PluginError
from omniretail.kernel import Kernel
from omniretail.storage.jobs import Job, JobQueue, TaskLeases
from omniretail.worker import backoff_delay

log = logging.getLogger("omniretail.background")

JobHandler = Callable[[Kernel, dict[str, Any]], Awaitable[dict[str, Any]]]
JOB_ATTEMPTS = 3


async def _publish_job(kernel: Kernel, payload: dict[str, Any]) -> dict[str, Any]:
    from omniretail.publishing import Publisher

    publisher = Publisher(kernel)
    full = bool(payload.get("full", False))
    runs = [
        await publisher.publish(name, trigger="api", full=full) for name in publisher.channels(payload.get("channel"))
    ]
    return {"runs": [run.id for run in runs]}


#: Kinds of job the worker knows how to run.
JOB_HANDLERS: dict[str, JobHandler] = {"publish": _publish_job}


async def recover_payments(kernel: Kernel, state: dict[str, Any]) -> dict[str, Any]:
    """Ask providers again about checkouts and operations left in between (a crash, a lost
    answer), with the same idempotency keys, then finish or undo them."""
    attempts = await kernel.checkout.recover()
    operations = await kernel.payments.recover_operations()
    return {
        "attempts_last_run": attempts,
        "operations_last_run": operations,
        "runs": int(state.get("runs", 0)) + 1,
    }


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRunner:
    def __init__(self, kernel: Kernel, *, name: str | None = None, lease_seconds: float = 600.0) -> None:
        self.kernel = kernel
        self.queue = JobQueue(kernel.db)
        self.name = name or worker_name()
        self.lease_seconds = lease_seconds

    async def run_once(self) -> Job | None:
        job = await self.queue.claim(self.name, self.kernel.clock(), self.lease_seconds)
        if job is None:
            return None
        handler = JOB_HANDLERS.get(job.kind)
        try:
            if handler is None:
                raise PluginError(f"no handler for job kind {job.kind!r}")
            result = await handler(self.kernel, job.payload)
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            now = self.kernel.clock()
            retry = None
            if job.attempts < JOB_ATTEMPTS and handler is not None:
                retry = now + timedelta(seconds=backoff_delay(job.attempts, self.kernel.config.worker.backoff_seconds))
            await self.queue.finish(job.id, self.name, now, error=repr(exc), retry_at=retry)
        else:
            await self.queue.finish(job.id, self.name, self.kernel.clock(), result=result)
        return job


class TaskRunner:
    """Runs each enabled channel's periodic tasks; one worker at a time per task."""

    def __init__(self, kernel: Kernel, *, name: str | None = None) -> None:
        self.kernel = kernel
        self.leases = TaskLeases(kernel.db)
        self.name = name or worker_name()
        self.tasks: list[PeriodicTask] = []
        if kernel.payments.providers:
            self._add(
                PeriodicTask(
                    name="payments.recover",
                    every_seconds=kernel.config.worker.payment_recovery_seconds,
                    run=lambda state: recover_payments(kernel, state),
                )
            )
        for channel, ctx in kernel.channels.items():
            kernel.channel_hook(channel, "register_tasks")(register=self._add, channel=ctx)

    def _add(self, task: PeriodicTask) -> None:
        if not isinstance(task, PeriodicTask):
            raise PluginError("register_tasks: register() takes a PeriodicTask")
        if any(t.name == task.name for t in self.tasks):
            raise PluginError(f"periodic task {task.name!r} is registered twice")
        self.tasks.append(task)

    async def run_due(self) -> int:
        """Run every task that is due and not held by another worker; returns how many ran."""
        ran = 0
        for task in self.tasks:
            now = self.kernel.clock()
            state = await self.leases.claim(task.name, self.name, now, lease_seconds=max(task.every_seconds * 4, 60))
            if state is None:
                continue
            ran += 1
            error = None
            try:
                state = await task.run(state)
            except Exception as exc:
                log.exception("periodic task %s failed", task.name)
                error = repr(exc)
            finished = self.kernel.clock()
            await self.leases.release(
                task.name,
                self.name,
                finished,
                state=state,
                next_run_at=finished + timedelta(seconds=task.every_seconds),
                error=error,
            )
        return ran


async def run_background(kernel: Kernel, stop: asyncio.Event, *, poll_seconds: float | None = None) -> None:
    """Jobs and periodic tasks until ``stop`` is set (the outbox has its own loop)."""
    jobs = JobRunner(kernel)
    tasks = TaskRunner(kernel)
    poll = poll_seconds or kernel.config.worker.poll_seconds
    while not stop.is_set():
        busy = False
        try:
            busy = await jobs.run_once() is not None
            await tasks.run_due()
        except Exception:
            log.exception("background round failed; retrying")
        if not busy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
