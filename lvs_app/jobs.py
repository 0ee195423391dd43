"""Periodic work as a declared table of timed jobs.

Each :class:`TimedJob` has a name, an interval and a handler that takes
``now`` and returns messages.  :meth:`JobTable.run_due` runs the jobs whose
time has come; the Ryu shim calls it from one green thread on the real
clock, the behaviour tests on the fake clock.  A job that raises is logged
and skipped until its next turn, so one broken job never stops the others.
"""

import logging
from dataclasses import dataclass

LOG = logging.getLogger(__name__)


@dataclass
class TimedJob:
    name: str
    interval: float            # seconds between runs
    handler: object            # callable(now) -> list of (dpid, message)
    next_run: float = None     # None: first run one interval after the table starts

    def __post_init__(self):
        if self.interval <= 0:
            raise ValueError(f"timed job {self.name}: interval {self.interval} must be > 0")


class JobTable:
    """The timed jobs of one manager."""

    def __init__(self, jobs=(), start=0.0):
        self.jobs = {}
        for job in jobs:
            self.add(job, start)

    def add(self, job, now=0.0):
        if job.name in self.jobs:
            raise ValueError(f"timed job {job.name} is declared twice")
        if job.next_run is None:
            job.next_run = now + job.interval
        self.jobs[job.name] = job

    def next_due(self):
        """When the next job is due (the shim sleeps until then)."""
        return min((job.next_run for job in self.jobs.values()), default=None)

    def run_due(self, now):
        """Run every job whose time has come; returns their messages."""
        out = []
        for job in self.jobs.values():
            if now < job.next_run:
                continue
            # the next run keeps the rhythm, but never piles up missed runs
            job.next_run += job.interval
            if job.next_run <= now:
                job.next_run = now + job.interval
            try:
                out += job.handler(now) or []
            except Exception:      # noqa: BLE001 -- one job must not stop the others
                LOG.exception("timed job %s failed", job.name)
        return out
