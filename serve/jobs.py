"""Background jobs for the slow edits (optimization, inversion): one runs at a time, a few wait, the page polls.

A job holds its step / total while it runs, then its result (a PNG, the method and reason, an uploaded latent)
or its one-line error. Finished jobs are kept for the page to read (the last MAX_KEPT), then forgotten.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from serve.params import RequestError

MAX_PENDING = 2  # jobs queued or running at once; a third is refused (429)
MAX_KEPT = 32  # finished jobs remembered


class Job:
    """One background computation: kind, progress (step of total), then result or error."""

    def __init__(self, kind: str, total: int):
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.step, self.total = 0, int(total)
        self.status = "queued"  # queued | running | done | error
        self.error = None
        self.result: dict = {}
        self.png: bytes | None = None
        self.started = time.time()

    def progress(self, step: int, total: int) -> None:
        self.step, self.total = int(step), int(total)

    def to_dict(self) -> dict:
        out = dict(
            id=self.id,
            kind=self.kind,
            status=self.status,
            step=self.step,
            total=self.total,
            seconds=round(time.time() - self.started, 2),
        )
        if self.error:
            out["error"] = self.error
        out.update(self.result)
        if self.png is not None:
            out["image"] = f"/api/job/{self.id}/image.png"
        return out


class Jobs:
    """A one-worker queue of Jobs; `start(kind, total, fn)` runs fn(job) in the background."""

    def __init__(self, max_pending: int = MAX_PENDING):
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="styleatlas-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, total: int, fn) -> Job:
        with self._lock:
            pending = sum(j.status in ("queued", "running") for j in self._jobs.values())
            if pending >= self.max_pending:
                raise RequestError(
                    f"{pending} jobs are already running or waiting; wait for one to finish.", status=429
                )
            job = Job(kind, total)
            self._jobs[job.id] = job
            done = [k for k, j in self._jobs.items() if j.status in ("done", "error")]
            for k in done[: max(0, len(done) - MAX_KEPT)]:
                del self._jobs[k]
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn) -> None:
        import logging

        from models.errors import AtlasError

        job.status = "running"
        try:
            fn(job)
            job.status = "done"
        except AtlasError as exc:
            job.error, job.status = " ".join(str(exc).split()), "error"
        except Exception as exc:  # a bug: one line for the page, the traceback for the server log
            logging.getLogger("styleatlas.serve").exception("job %s failed", job.id)
            job.error, job.status = f"internal error ({type(exc).__name__}); the server log has the details.", "error"

    def get(self, ident: str) -> Job:
        job = self._jobs.get(ident)
        if job is None:
            raise RequestError(f"no job {ident[:20]!r} on this server (jobs last while it runs).", status=404)
        return job
