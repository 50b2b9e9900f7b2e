"""Where scenario runs execute: a local process pool, a Dask cluster or a Ray cluster.

All executors share one small interface: ``imap(fn, items)`` yields ``(index, result)`` pairs
as runs complete (for progress bars), ``map(fn, items)`` returns results in input order. ``fn``
must be a picklable top-level function. Dask and Ray are optional extras, imported only when
chosen; a missing extra is a clear :class:`ExecutorUnavailable` error, never an ImportError.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

__all__ = [
    "ENGINES",
    "DaskExecutor",
    "Executor",
    "ExecutorUnavailable",
    "LocalExecutor",
    "RayExecutor",
    "default_jobs",
    "make_executor",
]

T = TypeVar("T")
R = TypeVar("R")
Engine = Literal["local", "dask", "ray"]
ENGINES: tuple[str, ...] = ("local", "dask", "ray")


class ExecutorUnavailable(RuntimeError):
    """The chosen engine cannot be used here (its optional extra is not installed, or no
    cluster answers at the given address)."""


def default_jobs() -> int:
    """Worker count when none is given: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` over ``items`` somewhere; the same interface for every engine."""

    name: str
    jobs: int

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        """``(index, fn(items[index]))`` in completion order."""
        ...

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(x) for x in items]``, in input order."""
        ...

    def close(self) -> None:
        """Release workers / the cluster connection."""
        ...


def _noop(x: int) -> int:
    return x


class _Base:
    name = "base"
    jobs = 1

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        raise NotImplementedError

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        out: list[Any] = [None] * len(items)
        for i, r in self.imap(fn, items):
            out[i] = r
        return out

    def close(self) -> None:
        return None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(_Base):
    """A process pool on this machine (``concurrent.futures``); ``jobs=1`` runs in-process,
    which keeps tracebacks and profiling simple and avoids pool start-up for tiny batches."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = default_jobs() if jobs is None else max(1, int(jobs))
        self._pool: ProcessPoolExecutor | None = None

    def warm_up(self) -> None:
        """Start the worker processes now (before progress bars or other threads start)."""
        if self.jobs > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.jobs)
            list(self._pool.map(_noop, range(self.jobs)))

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if self.jobs == 1 or len(items) <= 1:
            for i, x in enumerate(items):
                yield i, fn(x)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(items)))
        pending: dict[Future[R], int] = {
            self._pool.submit(fn, x): i for i, x in enumerate(items)
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    yield i, fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(_Base):
    """A ``dask.distributed`` cluster: connect to ``address`` (``tcp://host:8786``), or start a
    local cluster of ``jobs`` worker processes when no address is given."""

    name = "dask"

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ExecutorUnavailable(
                "the dask engine needs the optional extra: pip install 'vigil[dask]' "
                "(dask[distributed])"
            ) from None
        self.jobs = default_jobs() if jobs is None else max(1, int(jobs))
        self._cluster: Any = None
        try:
            if address:
                self._client = Client(address, timeout="10s")
            else:
                self._cluster = LocalCluster(
                    n_workers=self.jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                self._client = Client(self._cluster)
        except OSError as exc:
            raise ExecutorUnavailable(f"no dask scheduler at {address}: {exc}") from None
        if address:
            n = len(self._client.scheduler_info().get("workers", {}))
            self.jobs = max(1, n)

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        from dask.distributed import as_completed

        futures = self._client.map(fn, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            yield index[fut.key], fut.result()

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


class RayExecutor(_Base):
    """A Ray cluster: connect to ``address`` (``ray://host:10001`` or ``auto``), or start Ray
    locally with ``jobs`` CPUs when no address is given."""

    name = "ray"

    def __init__(self, jobs: int | None = None, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable(
                "the ray engine needs the optional extra: pip install 'vigil[ray]'"
            ) from None
        self._ray = ray
        self.jobs = default_jobs() if jobs is None else max(1, int(jobs))
        try:
            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
                self.jobs = max(1, int(ray.cluster_resources().get("CPU", 1)))
            else:
                ray.init(num_cpus=self.jobs, ignore_reinit_error=True, log_to_driver=False)
        except ConnectionError as exc:
            raise ExecutorUnavailable(f"no ray cluster at {address}: {exc}") from None

    def imap(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        remote = ray.remote(fn)
        refs = [remote.remote(x) for x in items]
        index = {r: i for i, r in enumerate(refs)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield index[ref], ray.get(ref)

    def close(self) -> None:
        self._ray.shutdown()


def make_executor(
    engine: str = "local", *, jobs: int | None = None, address: str | None = None
) -> Executor:
    """The executor for ``engine`` ("local" | "dask" | "ray"); ``address`` is for clusters."""
    if engine == "local":
        if address:
            raise ExecutorUnavailable("--address is only for the dask and ray engines")
        return LocalExecutor(jobs)
    if engine == "dask":
        return DaskExecutor(jobs, address)
    if engine == "ray":
        return RayExecutor(jobs, address)
    raise ExecutorUnavailable(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
