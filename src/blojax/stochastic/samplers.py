r"""Seeded minibatch samplers over a fixed partition of the data into blocks.

A data set of ``n`` samples is cut into ``n_blocks = ceil(n / b)`` contiguous blocks of ``b =
batch_size`` samples: block ``j`` holds samples ``[s_j, s_j + b)`` with ``s_j = min(j b, n - b)``, so
when ``b`` does not divide ``n`` the last block is the final ``b`` samples and overlaps its predecessor
(every batch has the same static shape, and every sample is seen each epoch). A sampler draws a
sequence of block indices ``j_1, j_2, ...``; the variance-reduced solvers (SABA) keep one memory slot
per block.

Samplers are frozen dataclasses (hashable, static under ``jit``) with a pure functional interface::

    state = sampler.init(key)            # arrays only: vmappable over keys (seeds)
    block, state = sampler.next(state)   # int32 block index, next state

* :class:`Shuffle` -- without replacement per epoch: each epoch visits the blocks in a fresh random
  permutation (drawn from the key), so every block is used exactly once per epoch.
* :class:`WithReplacement` -- each draw is a block chosen uniformly at random, independently.
* :class:`Replay` -- replays a given sequence of block indices (e.g. one recorded from another
  implementation, to compare iterates draw by draw).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Shuffle", "WithReplacement", "Replay", "block_start"]


def _check_sizes(cls: str, n, batch_size) -> None:
    for name, val in (("n", n), ("batch_size", batch_size)):
        if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{cls}.{name} must be a positive integer, got {val!r}")
    if batch_size > n:
        raise ValueError(
            f"{cls}.batch_size ({batch_size}) is larger than the data (n={n} samples); use batch_size <= {n}"
        )


def block_start(block, n: int, batch_size: int):
    """First sample of block ``block``: ``min(block * b, n - b)`` (the last block ends at ``n``)."""
    return jnp.minimum(block * batch_size, n - batch_size)


class _Base:
    n: int
    batch_size: int

    @property
    def n_blocks(self) -> int:
        """``ceil(n / batch_size)``."""
        return -(-self.n // self.batch_size)

    def start(self, block):
        """First sample index of ``block``."""
        return block_start(block, self.n, self.batch_size)


class ShuffleState(NamedTuple):
    order: jax.Array  # the current epoch's permutation of the blocks
    pos: jax.Array  # position of the next draw in ``order``
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class Shuffle(_Base):
    """Without replacement per epoch: the blocks in a fresh random order every epoch.

    Args:
      n: number of samples in the data set the sampler draws from.
      batch_size: samples per batch (``1 <= batch_size <= n``).
    """

    n: int
    batch_size: int

    def __post_init__(self):
        _check_sizes("Shuffle", self.n, self.batch_size)

    def _permutation(self, key):
        return jax.random.permutation(key, self.n_blocks).astype(jnp.int32)

    def init(self, key) -> ShuffleState:
        key, sub = jax.random.split(key)
        return ShuffleState(self._permutation(sub), jnp.int32(0), key)

    def next(self, state: ShuffleState):
        block = state.order[state.pos]

        def new_epoch(s):
            key, sub = jax.random.split(s.key)
            return ShuffleState(self._permutation(sub), jnp.int32(0), key)

        def same_epoch(s):  # the increment inside the branch: one operation less per draw when compiled
            return ShuffleState(s.order, s.pos + 1, s.key)

        return block, jax.lax.cond(state.pos == self.n_blocks - 1, new_epoch, same_epoch, state)

    def draws(self, state, count: int):
        """The next ``count`` blocks at once, and the state (a ``ShuffleState``) after them: the same
        blocks and state as ``count`` calls of ``next``, with every epoch's permutation drawn before
        (the keys in one short loop over the epochs, the permutations batched) instead of a test for
        a new epoch at every draw."""
        N = self.n_blocks
        epochs = count // N + 1  # new epochs the draws can start (state.pos < N is not static)

        def epoch(key, _):  # the chain of keys is sequential; the permutations are not
            key, sub = jax.random.split(key)
            return key, (key, sub)

        _, (keys, subs) = jax.lax.scan(epoch, state.key, None, length=epochs)
        orders = jax.vmap(self._permutation)(subs)  # all epochs' permutations in one batched draw and sort
        orders = jnp.concatenate([state.order[None], orders])  # epoch 0: the current one
        keys = jnp.concatenate([state.key[None], keys])
        blocks = jax.lax.dynamic_slice_in_dim(orders.reshape(-1), state.pos, count)
        end = state.pos + count  # position in the concatenated epochs
        e = end // N  # epochs started by the draws (one starts right after a draw at position N - 1)
        after = ShuffleState(
            jax.lax.dynamic_index_in_dim(orders, e, keepdims=False),
            (end - e * N).astype(jnp.int32),
            jax.lax.dynamic_index_in_dim(keys, e, keepdims=False),
        )
        return blocks, after


class KeyState(NamedTuple):
    key: jax.Array


@dataclasses.dataclass(frozen=True)
class WithReplacement(_Base):
    """With replacement: every draw is a block chosen uniformly at random, independently of the others.

    Args as :class:`Shuffle`.
    """

    n: int
    batch_size: int

    def __post_init__(self):
        _check_sizes("WithReplacement", self.n, self.batch_size)

    def init(self, key) -> KeyState:
        return KeyState(key)

    def next(self, state: KeyState):
        key, sub = jax.random.split(state.key)
        return jax.random.randint(sub, (), 0, self.n_blocks, dtype=jnp.int32), KeyState(key)


class ReplayState(NamedTuple):
    pos: jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class Replay(_Base):
    """Replays ``blocks`` (a 1-D sequence of block indices) in order; the key is ignored.

    A solver run with a ``Replay`` sampler checks that enough draws remain (see each solver's
    ``draws_per_step``). Instances hash by identity.

    Args:
      blocks: block indices, each in ``[0, ceil(n / batch_size))``.
      n, batch_size: as :class:`Shuffle`.
    """

    blocks: np.ndarray
    n: int
    batch_size: int

    def __post_init__(self):
        _check_sizes("Replay", self.n, self.batch_size)
        blocks = np.asarray(self.blocks)
        if blocks.ndim != 1 or not np.issubdtype(blocks.dtype, np.integer):
            raise ValueError(
                f"Replay.blocks must be a 1-D sequence of integers, got shape {blocks.shape} "
                f"and dtype {blocks.dtype}"
            )
        if blocks.size and (blocks.min() < 0 or blocks.max() >= self.n_blocks):
            raise ValueError(
                f"Replay.blocks must lie in [0, {self.n_blocks}) for n={self.n}, batch_size={self.batch_size}; "
                f"got values in [{blocks.min()}, {blocks.max()}]"
            )
        object.__setattr__(self, "blocks", blocks.astype(np.int32))

    def init(self, key=None) -> ReplayState:
        return ReplayState(jnp.int32(0))

    def next(self, state: ReplayState):
        return jnp.asarray(self.blocks)[state.pos], ReplayState(state.pos + 1)

    @property
    def length(self) -> int:
        return int(self.blocks.size)
