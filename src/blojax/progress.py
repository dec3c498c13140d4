"""Long loops in compiled chunks with a progress bar: the one loop behind
``ColdStart/WarmStart.run(progress=True)`` and the experiments' ``ctx.scan`` / ``ctx.run``.

A loop of ``steps`` steps runs as ``ceil(steps / size)`` calls of ``chunk_fn(carry, n, start) ->
(carry, history)``, each over ``n <= size`` steps starting at step ``start``; the per-step histories
(leaves with the step axis at ``history_axis``) are brought to the host and concatenated. The chunk
lengths depend only on ``steps`` and ``size``, so a loop resumed at a chunk boundary (``done > 0``
with the history so far) performs the same computations as an uninterrupted one.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import jax
import numpy as np

__all__ = ["chunk_size", "scan_in_chunks"]


def chunk_size(steps: int, chunks: int) -> int:
    """Steps per chunk when ``steps`` steps are split into (at most) ``chunks`` chunks:
    ``ceil(steps / chunks)``, at least 1."""
    return max(1, -(-steps // max(1, chunks)))


def _concat(parts, axis: int):
    return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs], axis=axis), *parts)


def scan_in_chunks(
    chunk_fn: Callable[[Any, int, int], tuple[Any, Any]],
    carry,
    steps: int,
    *,
    size: int,
    progress: bool,
    desc: str | None = None,
    history_axis: int = 0,
    done: int = 0,
    history=None,
    after_chunk: Callable[[Any, Any, int], None] | None = None,
):
    """Run steps ``done .. steps - 1`` of a loop in chunks of ``size`` steps; ``(carry, history)``.

    Args:
      chunk_fn: ``chunk_fn(carry, n, start) -> (carry, history)`` runs ``n`` steps from step ``start``
        (typically one compiled ``lax.scan`` of length ``n``).
      carry: the loop state at step ``done``.
      steps: total number of steps (``>= 1``).
      size: steps per chunk (the last chunk may be shorter).
      progress: show a tqdm bar (on stderr) counting steps.
      desc: the bar's label.
      history_axis: axis of the step in the history leaves (1 for a loop vmapped over seeds).
      done, history: where a resumed loop starts: steps already done and their history (host arrays).
      after_chunk: called as ``after_chunk(carry, history_so_far, done)`` after every chunk (a
        checkpoint, a divergence check); an exception it raises stops the loop.

    Returns:
      the final carry and the whole history as host numpy arrays.
    """
    parts = [history] if history is not None else []
    bar = None
    if progress and done < steps:
        from tqdm import tqdm

        bar = tqdm(
            total=steps,
            initial=done,
            desc=desc,
            unit="step",
            leave=False,
            dynamic_ncols=True,
            file=sys.stderr,
        )
    try:
        while done < steps:
            n = min(size, steps - done)
            carry, hist = chunk_fn(carry, n, done)
            parts.append(jax.tree_util.tree_map(np.asarray, jax.block_until_ready(hist)))
            done += n
            if len(parts) > 1:
                parts = [_concat(parts, history_axis)]
            if bar is not None:
                bar.update(n)
            if after_chunk is not None:
                after_chunk(carry, parts[0], done)
    finally:
        if bar is not None:
            bar.close()
    return carry, parts[0]
