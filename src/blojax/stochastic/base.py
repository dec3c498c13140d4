r"""What the stochastic solvers share: the state, the oracles, one compiled step and the scan.

Conventions (every solver):

* ``v`` approximates the solution of the linear system ``H v = -grad_w F`` (``H = d^2 f / dw dw``),
  so the hypergradient estimate is ``d = grad_u F + M^T v`` with ``M^T v = d^2 f / du dw . v``; a
  solver that carries ``v`` is *warm* in ``v`` (the paper's warm start, extended to the linear
  system).
* Step sizes are optax schedules of the outer step count ``k`` (from 0); a float is a constant.
* Each outer step draws its batches from two independent streams, one per data set; the draw order
  within a step is part of each solver's definition (``draws_per_step``).
* ``run`` is one compiled ``lax.scan``; ``init`` takes a PRNG key, so ``jax.vmap`` over keys runs
  several seeds at once.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from .._tree import tree_all_finite, tree_norm, tree_zeros_like
from ..algorithms import NonFiniteError, _is_traced
from ..status import Status, raise_if
from .oracles import MinibatchProblem
from .samplers import Replay
from .schedules import as_schedule

__all__ = ["StochasticInfo", "StochasticState", "StochasticSolver"]

try:  # the tracer type of jax.vmap (not public): run() keeps the per-step guard under vmap
    from jax._src.interpreters.batching import BatchTracer as _BatchTracer
except ImportError:  # pragma: no cover - another jax: the per-step guard everywhere (always correct)
    _BatchTracer = None


class _Tape(NamedTuple):
    """A sampler state standing for the draws of one step, known beforehand (see ``_unguarded``)."""

    blocks: jax.Array  # the step's blocks, in draw order
    pos: jax.Array  # the next one


def _next(sampler, s):
    if isinstance(s, _Tape):
        return jax.lax.dynamic_index_in_dim(s.blocks, s.pos, keepdims=False), _Tape(s.blocks, s.pos + 1)
    return sampler.next(s)


def _batched(tree) -> bool:
    """Some leaf is being vmapped (or the check is unavailable: then True, the safe answer)."""
    if _BatchTracer is None:
        return True
    return any(isinstance(x, _BatchTracer) for x in jax.tree_util.tree_leaves(tree))


class StochasticInfo(NamedTuple):
    """Outcome of a stochastic run (``state.info``), arrays so that it survives ``jit``/``vmap``.

    status: a :class:`blojax.Status` code, ``CONVERGED`` (every step finite: the requested number
    of steps was taken; these solvers have no tolerance) or ``NONFINITE`` (NaN/inf appeared; the
    state is frozen at the last finite step); steps: outer steps taken; diverged_step: the first
    step whose update was non-finite (-1: none).
    """

    status: jax.Array
    steps: jax.Array
    diverged_step: jax.Array


class StochasticState(NamedTuple):
    """State of a stochastic bilevel run.

    u, w, v: outer variable, inner variable, linear-system variable (``None`` for F2SA);
    memory: variance-reduction memory (SABA) or ``None``; aux: solver-specific variables (F2SA's
    ``z`` and ``lam``); inner_sampler / outer_sampler: the two sampler states; step: outer steps
    taken; diverged_step: first step with a non-finite update (-1: none; the state is then frozen at
    the last finite one).
    """

    u: Any
    w: Any
    v: Any
    memory: Any
    aux: Any
    inner_sampler: Any
    outer_sampler: Any
    step: jax.Array
    diverged_step: jax.Array

    @property
    def status(self) -> jax.Array:
        """:class:`blojax.Status` code (int32): ``NONFINITE`` once a step was non-finite, else ``CONVERGED``."""
        return jnp.where(self.diverged_step >= 0, int(Status.NONFINITE), int(Status.CONVERGED)).astype(
            jnp.int32
        )

    @property
    def info(self) -> StochasticInfo:
        """:class:`StochasticInfo` of the run so far."""
        return StochasticInfo(self.status, self.step, self.diverged_step)


@dataclasses.dataclass(frozen=True, eq=False)
class StochasticSolver:
    """Base class. Subclasses set ``_LR_FIELDS`` and implement ``_update`` (one outer step)."""

    # set per instance by __post_init__ (ClassVar: not dataclass fields of the subclasses)
    _schedules: ClassVar[Any]
    _jit_step: ClassVar[Callable[..., Any]]
    _jit_scan: ClassVar[Callable[..., Any]]
    _jit_eager: ClassVar[Callable[..., Any]]

    problem: MinibatchProblem
    inner_sampler: Any
    outer_sampler: Any

    _LR_FIELDS = ()
    # True when ``_update`` already keeps ``memory`` unchanged on a non-finite step (SABA: row by row)
    _FREEZES_MEMORY = False
    # run() checks finiteness once per chunk of this many steps when the state is not batched (see _scan)
    _GUARD_EVERY = 1024

    # ------------------------------------------------------------------ construction
    def __post_init__(self):
        name = type(self).__name__
        if not isinstance(self.problem, MinibatchProblem):
            raise TypeError(
                f"{name}.problem must be a blojax.stochastic.MinibatchProblem (objectives with their data), "
                f"got {type(self.problem).__name__}"
            )
        for which, sampler, n in (
            ("inner_sampler", self.inner_sampler, self.problem.n_inner),
            ("outer_sampler", self.outer_sampler, self.problem.n_outer),
        ):
            if not all(hasattr(sampler, a) for a in ("init", "next", "n", "batch_size")):
                raise TypeError(
                    f"{name}.{which} must be a sampler (Shuffle, WithReplacement, Replay), got {sampler!r}"
                )
            data = "inner_data" if which == "inner_sampler" else "outer_data"
            if sampler.n != n:
                raise ValueError(
                    f"{name}.{which} draws from n={sampler.n} samples but problem.{data} has {n}: "
                    f"build it with n={n}"
                )
        record = getattr(self, "record", None)
        if record is not None and not callable(record):
            raise TypeError(f"{name}.record must be a callable record(u, w, v) -> dict, got {record!r}")
        self._check_fields()
        lrs = {
            f: as_schedule(getattr(self, f), name, f) for f in self._LR_FIELDS if getattr(self, f) is not None
        }
        object.__setattr__(self, "_schedules", lrs)
        object.__setattr__(self, "_jit_step", jax.jit(self._step))
        object.__setattr__(self, "_jit_scan", jax.jit(self._scan, static_argnums=(1, 2, 3, 4)))
        object.__setattr__(self, "_jit_eager", jax.jit(self._eager, static_argnums=(1, 2)))

    def _check_fields(self):
        pass

    def _check_int(self, field: str, lo: int = 1):
        val = getattr(self, field)
        if not isinstance(val, int) or isinstance(val, bool) or val < lo:
            raise ValueError(f"{type(self).__name__}.{field} must be an integer >= {lo}, got {val!r}")

    # ------------------------------------------------------------------ what a step costs
    @property
    def draws_per_step(self) -> tuple[int, int]:
        """The batches drawn per outer step, ``(inner, outer)``."""
        raise NotImplementedError

    @property
    def oracle_calls(self) -> dict:
        """The minibatch oracle calls per outer step, by kind (``grad_f`` = grad_w f, ``hvp`` = H v, ``cross``
        = M^T v, ``grad_F`` = grad_w F and grad_u F from one backward pass, ``grad_f_u`` = grad_u f)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ oracles on one batch
    def _draw_inner(self, s):
        block, s = _next(self.inner_sampler, s)
        return block, self.problem.inner_batch(block, self.inner_sampler.batch_size), s

    def _draw_outer(self, s):
        block, s = _next(self.outer_sampler, s)
        return block, self.problem.outer_batch(block, self.outer_sampler.batch_size), s

    def _grad_f_w(self, u, w, batch):
        return jax.grad(self.problem.f, argnums=1)(u, w, batch)

    def _grad_F(self, u, w, batch):
        """``(grad_w F_B, grad_u F_B)`` from one backward pass."""
        gu, gw = jax.grad(self.problem.F, argnums=(0, 1))(u, w, batch)
        return gw, gu

    def _grad_f_vjp(self, u, w, batch, v):
        """``(grad_w f_B, H_B v, M_B^T v)`` from one linearization of ``grad_w f_B`` at ``(w, u)``."""
        gw, vjp = jax.vjp(lambda w_, u_: self._grad_f_w(u_, w_, batch), w, u)
        hv, cross = vjp(v)
        return gw, hv, cross

    def _hvp(self, u, w, batch, v):
        """``H_B v``."""
        return jax.vjp(lambda w_: self._grad_f_w(u, w_, batch), w)[1](v)[0]

    def _cross(self, u, w, batch, v):
        """``M_B^T v = d/du <grad_w f_B(u, w), v>``."""
        return jax.vjp(lambda u_: self._grad_f_w(u_, w, batch), u)[1](v)[0]

    # ------------------------------------------------------------------ state
    def init(self, u0, w0, key=None, v0=None) -> StochasticState:
        """Initial state at ``(u0, w0)``, ``v0`` (default zeros); ``key`` (default ``PRNGKey(0)``)
        seeds the two samplers (split in two: inner, outer)."""
        ib = self.problem.inner_batch(0, self.inner_sampler.batch_size)
        ob = self.problem.outer_batch(0, self.outer_sampler.batch_size)
        self.problem.check(u0, w0, ib, ob)
        if key is None:
            key = jax.random.PRNGKey(0)
        k_in, k_out = jax.random.split(key)
        v = tree_zeros_like(w0) if v0 is None else v0
        return StochasticState(
            u=u0,
            w=w0,
            v=self._init_v(v),
            memory=self._init_memory(u0, w0, v),
            aux=self._init_aux(u0, w0),
            inner_sampler=self.inner_sampler.init(k_in),
            outer_sampler=self.outer_sampler.init(k_out),
            step=jnp.asarray(0, jnp.int32),
            diverged_step=jnp.asarray(-1, jnp.int32),
        )

    def _init_v(self, v):
        return v

    def _init_memory(self, u, w, v):
        return None

    def _init_aux(self, u, w):
        return None

    # ------------------------------------------------------------------ one step
    def _update(self, state: StochasticState, lr: dict, guard: bool = True):
        """Returns ``(u, w, v, memory, aux, inner_sampler, outer_sampler, direction)``.

        ``guard=False``: the step is part of an unguarded chunk (see :meth:`_scan`), whose result is
        discarded if any of its steps was non-finite; a solver that freezes part of its state itself
        (SABA's memory tables) may skip that work.
        """
        raise NotImplementedError

    def _fast_begin(self, state: StochasticState) -> StochasticState:
        """The state as the unguarded steps of :meth:`_scan` carry it (default: unchanged)."""
        return state

    def _fast_end(self, state: StochasticState) -> StochasticState:
        """Back from :meth:`_fast_begin`'s form to the state's."""
        return state

    @property
    def _v_carried(self) -> bool:
        """``v_{k+1}`` is computed from ``v_k`` as ``v_k - c g`` (so a non-finite ``v`` stays
        non-finite, see :meth:`_scan`); False when ``v`` is recomputed from scratch every step."""
        return True

    @staticmethod
    def _step_ok(state, u, w, v, d, aux):
        """The proposed step is kept: everything finite and the run not already frozen."""
        return jnp.logical_and(tree_all_finite((u, w, v, d, aux)), state.diverged_step < 0)

    def _step(self, state: StochasticState, freeze: bool = True, guard: bool = True, lr=None):
        """One step. ``freeze``: keep the last finite state on a non-finite step; ``guard=False``: no
        finiteness check at all (the unguarded chunks of :meth:`_scan`; ``status`` stays as it was);
        ``lr``: step sizes of this step already computed (by name; the others from the schedules)."""
        lr = {} if lr is None else lr
        lr = {name: lr[name] if name in lr else sched(state.step) for name, sched in self._schedules.items()}
        u, w, v, memory, aux, si, so, d = self._update(state, lr, guard)
        proposed = StochasticState(u, w, v, memory, aux, si, so, state.step + 1, state.diverged_step)
        nan = jnp.full((), jnp.nan, jnp.result_type(*jax.tree_util.tree_leaves(u)))
        metrics = dict(
            status=jnp.asarray(0, jnp.int32),  # set below, after the finiteness check
            u_norm=tree_norm(u),
            w_norm=tree_norm(w),
            v_norm=tree_norm(v) if v is not None else nan,
            direction_norm=tree_norm(d),
        )
        record = getattr(self, "record", None)
        if record is not None:
            extra = record(u, w, v)
            clash = set(extra) & set(metrics)
            if clash:
                raise ValueError(f"record() returned reserved metric names {sorted(clash)}")
            metrics.update(extra)
        if not guard:  # unguarded chunk: accepted only if no step in it was non-finite (see _scan)
            metrics["status"] = proposed.status
            return proposed, metrics
        ok = self._step_ok(state, u, w, v, d, aux)
        if not freeze:  # detect only: the first bad step is recorded, the state goes on (NaN)
            bad = jnp.logical_and(state.diverged_step < 0, jnp.logical_not(ok))
            new_state = proposed._replace(diverged_step=jnp.where(bad, state.step, state.diverged_step))
            metrics["status"] = new_state.status
            return new_state, metrics
        frozen = state._replace(
            diverged_step=jnp.where(state.diverged_step < 0, state.step, state.diverged_step)
        )
        if self._FREEZES_MEMORY:
            frozen = frozen._replace(memory=None)
            kept = proposed.memory
            proposed = proposed._replace(memory=None)
        new_state = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), proposed, frozen)
        if self._FREEZES_MEMORY:
            new_state = new_state._replace(memory=kept)
        metrics["status"] = new_state.status
        return new_state, metrics

    def step(self, state: StochasticState):
        """One outer step (jit-compiled): ``(state, metrics)``, metrics at the new iterates."""
        return self._jit_step(state)

    # ------------------------------------------------------------------ many steps
    def _scan(self, state, steps, history=True, freeze=True, chunked=False):
        def body(freeze_, guard=True):
            def f(s, _):
                s, metrics = self._step(s, freeze_, guard)
                return s, (metrics if history else None)  # no history: XLA drops the per-step norms

            return f

        K = self._GUARD_EVERY
        if not (freeze and chunked and K > 1 and steps >= 1):
            return jax.lax.scan(body(freeze), state, None, length=steps)

        # The guard once per chunk of K steps: K steps with no finiteness check at all; if one of them
        # was non-finite (or the run was already frozen), the chunk is run again from its start with
        # the per-step guard. Every step is deterministic given the state (the samplers live in it), so
        # the result is the per-step guard's; the check and the select of the state then cost once per
        # chunk instead of once per step.
        #
        # Which step was non-finite need not be known in the fast pass, only whether one was, and the
        # state at the chunk's end tells: u, w, v (when carried) and aux are each updated as x - a g,
        # and x - a g is non-finite wherever x is (NaN - y = NaN, inf - y is inf or NaN for every y),
        # so a non-finite entry stays non-finite to the end of the chunk; a non-finite direction d
        # makes u - b d non-finite (b * NaN = NaN, b * inf = +-inf, 0 * inf = NaN). A v that is not
        # carried (StocBiO, AmIGO(warm_v=False): recomputed each step) is checked at every step.
        fast = functools.partial(self._unguarded, history=history)

        def chunk_of(length):
            def chunk(s, _=None):
                frozen = s.diverged_step >= 0

                def skip():  # an already frozen run: no fast pass, straight to the per-step guard
                    shapes = jax.eval_shape(lambda: fast(s, length))
                    return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)

                new, hist, ok = jax.lax.cond(frozen, skip, lambda: fast(s, length))
                return jax.lax.cond(
                    jnp.logical_or(frozen, jnp.logical_not(ok)),
                    lambda: jax.lax.scan(body(True), s, None, length=length),
                    lambda: (new, hist),
                )

            return chunk

        n_chunks, rest = divmod(steps, K)
        parts = []
        if n_chunks:
            state, hist = jax.lax.scan(chunk_of(K), state, None, length=n_chunks)
            parts.append(jax.tree_util.tree_map(lambda h: h.reshape((n_chunks * K,) + h.shape[2:]), hist))
        if rest:
            state, tail = chunk_of(rest)(state)
            parts.append(tail)
        hist = (
            parts[0]
            if len(parts) == 1
            else jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), *parts)
        )
        return state, hist

    def _unguarded(self, s, length, history=True):
        """``length`` steps with no finiteness check at all: ``(state, history, ok)``, ``ok`` False when
        one of them was non-finite (the result must then be discarded; see :meth:`_scan`)."""

        # inverse_power step sizes a / (k + 1)^e: the powers of the whole pass in one vectorized
        # evaluation before the loop, which then reads one number per schedule and step instead of
        # evaluating a power (a transcendental function) every step; the same values to the bit, see
        # schedules.inverse_power. Other schedules are evaluated in the step, constants folded.
        ks = s.step + jnp.arange(length, dtype=jnp.result_type(s.step))
        powers = {name: f.power(ks) for name, f in self._schedules.items() if hasattr(f, "power")}

        # A sampler that can draw many blocks at once (Shuffle.draws) draws those of the whole pass
        # before the loop: which blocks a step uses does not depend on the iterates, and the loop then
        # reads each step's blocks (a _Tape) instead of testing for a new epoch at every draw. The
        # same blocks, and the same sampler state at the end.
        tapes, after = {}, {}
        for field, sampler, per in (
            ("inner_sampler", self.inner_sampler, self.draws_per_step[0]),
            ("outer_sampler", self.outer_sampler, self.draws_per_step[1]),
        ):
            if hasattr(sampler, "draws") and per >= 1 and length >= 1:
                blocks, after[field] = sampler.draws(getattr(s, field), length * per)
                tapes[field] = blocks.reshape(length, per)

        def step_sizes(p):
            return {name: self._schedules[name].init_value * x for name, x in p.items()}

        def step(carry, x):
            p, tape = x
            zero = jnp.zeros((), jnp.int32)
            carry = carry._replace(**{f: _Tape(b, zero) for f, b in tape.items()})
            s, metrics = self._step(carry, False, False, step_sizes(p))
            return s._replace(**dict.fromkeys(tape)), (metrics if history else None)

        s = self._fast_begin(s)._replace(**dict.fromkeys(tapes))
        xs = (powers, tapes)
        if self._v_carried:
            s, hist = jax.lax.scan(step, s, xs, length=length)
            ok = tree_all_finite((s.u, s.w, s.v, s.aux))
        else:  # v recomputed every step: a non-finite v does not persist, so it is checked at every step

            def f(carry, x):
                s, ok = carry
                s, metrics = step(s, x)
                return (s, jnp.logical_and(ok, tree_all_finite(s.v))), metrics

            (s, ok), hist = jax.lax.scan(f, (s, jnp.asarray(True)), xs, length=length)
            ok = jnp.logical_and(ok, tree_all_finite((s.u, s.w, s.aux)))
        return self._fast_end(s._replace(**after)), hist, ok

    def _eager(self, state, steps, history=True):
        """The program of an eager ``run``: ``steps`` unguarded steps in one ``lax.scan`` and whether
        their result can be kept (every step finite and ``state`` not frozen). When it cannot, ``run``
        replays the same steps from ``state`` with the guard (:meth:`_scan`), on the host's decision:
        the flag is read there anyway (to raise eagerly), so the compiled program holds only the loop,
        with no conditional around it and no copy of the state kept for a replay."""
        new, hist, ok = self._unguarded(state, steps, history)
        return new, hist, jnp.logical_and(ok, state.diverged_step < 0)

    def _check_replay(self, state, steps):
        for which, sampler, s, per in (
            ("inner_sampler", self.inner_sampler, state.inner_sampler, self.draws_per_step[0]),
            ("outer_sampler", self.outer_sampler, state.outer_sampler, self.draws_per_step[1]),
        ):
            if isinstance(sampler, Replay) and not _is_traced(s):
                pos = int(jnp.max(s.pos))
                need = pos + steps * per
                if need > sampler.length:
                    raise ValueError(
                        f"{type(self).__name__}.{which} replays {sampler.length} blocks but {steps} steps from "
                        f"draw {pos} need {need} ({per} per step)"
                    )

    def run(
        self,
        state: StochasticState,
        steps: int,
        *,
        throw: bool | None = None,
        history: bool = True,
        freeze: bool = True,
        progress: bool = False,
        chunks: int = 20,
        on_nonfinite: str | None = None,
    ):
        """Run ``steps`` outer steps as one compiled ``lax.scan``.

        Args:
          state: from :meth:`init` (or a previous run).
          steps: number of outer steps (a Python int).
          throw: ``True`` (default) raises when a step was non-finite: :class:`blojax.NonFiniteError`
            carrying the last finite state (``err.state``) and the history (``err.history``) when
            called eagerly; under ``jax.jit`` / ``jax.vmap`` a runtime error with the same message
            (as :meth:`blojax.InnerLoop.run` does). ``False`` returns; then ``state.status`` is
            ``blojax.Status.NONFINITE`` and ``state.info.diverged_step`` names the first bad step.
          history: ``False`` skips the per-step metrics (``history`` is then ``None``): the loop then
            holds only the algorithm's own work, as a benchmark runner wants.
          freeze: ``True`` (default) keeps the state at the last finite step once a step is non-finite.
            Called eagerly, the steps run without any check and one finiteness flag of the result is
            read on the host; only when it says a step was non-finite (or ``state`` came in frozen)
            are the same steps run again from ``state`` with the guard (same result as checking
            every step). Under ``jit`` it is one check per chunk of up to 1024 unchecked steps, a
            chunk that went non-finite being run again step by step; under ``vmap`` a check and a
            select of every state leaf per step. ``False`` only detects it, with a check per step (``status``,
            ``info.diverged_step`` and ``throw`` work the same), and lets the NaN run on.
          progress: show a progress bar; the run is then split into ``chunks`` compiled scans.
          on_nonfinite: the older spelling of ``throw``: ``"raise"`` (= ``throw=True``) or ``"stop"``
            (= ``throw=False``).

        Returns ``(state, history)``: per-step arrays ``status`` (:class:`blojax.Status` code after the
        step), ``u_norm``, ``w_norm``, ``v_norm``, ``direction_norm`` (norm of the outer update
        direction ``d_k``) and whatever ``record`` adds; ``state.info`` is a :class:`StochasticInfo`.
        Works under ``jax.vmap`` over states (e.g. ``init`` with a batch of keys).
        """
        name = type(self).__name__
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise ValueError(f"{name}.run(steps=...) must be a non-negative Python int, got {steps!r}")
        if on_nonfinite is not None:
            if on_nonfinite not in ("raise", "stop"):
                raise ValueError(
                    f"{name}.run(on_nonfinite=...) must be 'raise' or 'stop', got {on_nonfinite!r}"
                )
            if throw is not None and throw != (on_nonfinite == "raise"):
                raise ValueError(
                    f"{name}.run: throw={throw!r} contradicts on_nonfinite={on_nonfinite!r}; pass only throw"
                )
            throw = on_nonfinite == "raise"
        if throw is None:
            throw = True
        for arg, val in (("history", history), ("freeze", freeze)):
            if not isinstance(val, bool):
                raise TypeError(f"{name}.run({arg}=...) must be True or False, got {val!r}")
        if not isinstance(throw, bool):
            raise TypeError(f"{name}.run(throw=...) must be True or False, got {throw!r}")
        if isinstance(self.inner_sampler, Replay) or isinstance(self.outer_sampler, Replay):
            self._check_replay(state, steps)
        leaves = jax.tree_util.tree_leaves(state)
        traced = any(isinstance(x, jax.core.Tracer) for x in leaves)
        # under vmap a cond runs both branches: there the per-step guard is cheaper
        chunked = not (traced and _batched(leaves))
        # eagerly, the guard's decision is made on the host (see _eager)
        eager = not traced and freeze and self._GUARD_EVERY > 1

        def scan(state, n):
            """``(state, history, finite)``; ``finite``: known on the host that every step was finite."""
            if eager and n >= 1:
                new, out, ok = self._jit_eager(state, n, history)
                if not isinstance(ok, jax.core.Tracer):  # (a concrete state closed over by an outer jit)
                    if np.asarray(ok):  # waits for the result, as reading the divergence flag would
                        return new, out, True
                    return (*self._jit_scan(state, n, history, freeze, True), False)  # replay, guarded
            return (*self._jit_scan(state, n, history, freeze, chunked), False)

        if progress and not traced and steps > 1:
            from tqdm.auto import tqdm

            size, parts, done, finite = max(1, -(-steps // max(1, chunks))), [], 0, True
            with tqdm(total=steps, desc=name, unit="step") as bar:
                while done < steps:
                    n = min(size, steps - done)
                    state, h, fin = scan(state, n)
                    finite = finite and fin
                    jax.block_until_ready(state)
                    parts.append(h)
                    done += n
                    bar.update(n)
            out = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts) if history else None
        else:
            state, out, finite = scan(state, steps)
        if finite or not throw:
            return state, out
        message = (
            f"{name}: non-finite values (NaN/inf) at an outer step; the state is frozen at the last "
            "finite step. Lower the step sizes, or pass throw=False and read state.info."
        )
        if traced or _is_traced(state):
            return raise_if(state, jnp.any(state.diverged_step >= 0), message), out
        bad = int(np.max(np.asarray(state.diverged_step)))
        if bad >= 0:
            kept = (
                "the state is frozen at the last finite step (err.state)"
                if freeze
                else "err.state holds the non-finite values (freeze=False)"
            )
            raise NonFiniteError(
                f"{name}: non-finite values (NaN/inf) at outer step {bad}; {kept} and err.history holds the "
                "metrics. Lower the step sizes or pass throw=False (then state.status is "
                "blojax.Status.NONFINITE).",
                state,
                out,
            )
        return state, out
