"""Seed plumbing: every random stream in a simulation is a child of one `SeedSequence`.

Children are derived by a *stable key* (a name such as ``"sensor/radar"``) hashed into the
spawn key, not by spawn order, so adding a sensor or a fault never changes another's draws.
"""

from __future__ import annotations

import hashlib

import numpy as np
from numpy.random import Generator, SeedSequence

__all__ = ["child", "generator", "key_words", "root"]


def root(seed: int | SeedSequence) -> SeedSequence:
    """The root seed sequence of a run (an int seed, or an existing sequence passed through)."""
    if isinstance(seed, SeedSequence):
        return seed
    return SeedSequence(int(seed))


def key_words(key: str) -> tuple[int, ...]:
    """A key string hashed into four 32-bit words (BLAKE2b: stable across runs and platforms)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    return tuple(int(w) for w in np.frombuffer(digest, dtype="<u4"))


def child(parent: SeedSequence, *keys: str) -> SeedSequence:
    """The child of ``parent`` named by ``keys`` (a path: ``child(ss, "sensor", "radar")``).

    Deterministic in (parent, keys) only; independent of how many other children exist.
    """
    spawn_key = tuple(parent.spawn_key)
    for key in keys:
        spawn_key = spawn_key + key_words(str(key))
    return SeedSequence(entropy=parent.entropy, spawn_key=spawn_key, pool_size=parent.pool_size)


def generator(parent: SeedSequence | int, *keys: str) -> Generator:
    """A PCG64 generator for the child named by ``keys`` (the usual way to get a stream)."""
    return np.random.default_rng(child(root(parent), *keys))
