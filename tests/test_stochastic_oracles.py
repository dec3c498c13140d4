"""Minibatch oracles, samplers, step-size schedules and the solvers' contract (errors, vmap, seeds)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import blojax as blo
from blojax.stochastic import MinibatchProblem, Replay, Shuffle, WithReplacement, inverse_power
from blojax.stochastic.samplers import block_start
from conftest import assert_close

SOLVERS = [blo.SOBA, blo.SABA, blo.AmIGO, blo.StocBiO, blo.F2SA]


def _draw(sampler, key, k):
    state = sampler.init(key)
    nxt = jax.jit(sampler.next)
    out = []
    for _ in range(k):
        b, state = nxt(state)
        out.append(int(b))
    return np.asarray(out)


# ------------------------------------------------------------------------------------ samplers
@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), b=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_shuffle_visits_every_block_once_per_epoch(n, b, seed):
    if b > n:
        with pytest.raises(ValueError, match="batch_size .* larger than the data"):
            Shuffle(n, b)
        return
    s = Shuffle(n, b)
    nb = s.n_blocks
    assert nb == -(-n // b)
    draws = _draw(s, jax.random.PRNGKey(seed), 3 * nb).reshape(3, nb)
    for epoch in draws:
        assert sorted(epoch.tolist()) == list(range(nb))
    # blocks cover every sample, the last one ends at n, every batch has b samples
    starts = np.asarray([int(block_start(j, n, b)) for j in range(nb)])
    covered = np.zeros(n, bool)
    for st_ in starts:
        covered[st_ : st_ + b] = True
    assert covered.all() and starts.max() + b == n and starts.min() == 0


def test_samplers_are_seeded_and_vmappable():
    s = Shuffle(64, 4)
    a = _draw(s, jax.random.PRNGKey(0), 32)
    assert np.array_equal(a, _draw(s, jax.random.PRNGKey(0), 32))
    assert not np.array_equal(a, _draw(s, jax.random.PRNGKey(1), 32))
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    blocks, _ = jax.vmap(lambda k: s.next(s.init(k)))(keys)
    assert blocks.shape == (5,) and len(set(np.asarray(blocks).tolist())) > 1


def test_with_replacement_is_uniform():
    s = WithReplacement(40, 10)  # 4 blocks
    draws = _draw(s, jax.random.PRNGKey(0), 2000)
    counts = np.bincount(draws, minlength=4)
    assert counts.min() > 400 and counts.max() < 600  # 500 +- 4.5 sigma
    # with replacement: some epoch-length window repeats a block
    assert any(len(set(draws[i : i + 4])) < 4 for i in range(0, 40, 4))


def test_replay_replays_and_checks():
    r = Replay([2, 0, 1], n=9, batch_size=3)
    assert _draw(r, None, 3).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match=r"Replay.blocks must lie in \[0, 3\)"):
        Replay([3], n=9, batch_size=3)
    with pytest.raises(ValueError, match="Replay.blocks must be a 1-D sequence of integers"):
        Replay([[0]], n=9, batch_size=3)


@pytest.mark.parametrize("n,b", [(0, 1), (5, 0), (5, 6), (5, 2.0), (True, 1)])
def test_sampler_sizes_are_checked(n, b):
    with pytest.raises(ValueError, match="Shuffle"):
        Shuffle(n, b)


# ------------------------------------------------------------------------------------ oracles
def _problem(n=12, m=8, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), rng.normal(size=n)
    Xv, yv = rng.normal(size=(m, d)), rng.normal(size=m)

    def f(u, w, B):
        A, t = B
        return 0.5 * jnp.mean((A @ w - t) ** 2) + 0.5 * jnp.exp(u[0]) * jnp.sum(w**2)

    def F(u, w, B):
        A, t = B
        return 0.5 * jnp.mean((A @ w - t) ** 2)

    return MinibatchProblem(
        f, F, inner_data=(jnp.asarray(X), jnp.asarray(y)), outer_data=(jnp.asarray(Xv), jnp.asarray(yv))
    )


def test_batches_are_the_blocks():
    p = _problem(n=10)
    X = np.asarray(p.inner_data[0])
    np.testing.assert_array_equal(np.asarray(p.inner_batch(1, 4)[0]), X[4:8])
    np.testing.assert_array_equal(np.asarray(p.inner_batch(2, 4)[0]), X[6:10])  # last block: final 4
    u, w = jnp.zeros(1), jnp.ones(3)
    np.testing.assert_allclose(float(p.f_full(u, w)), float(p.f(u, w, p.inner_data)))


def test_problem_data_are_checked():
    f = lambda u, w, B: jnp.sum(w)  # noqa: E731
    with pytest.raises(ValueError, match="inner_data leaves must share a leading sample axis"):
        MinibatchProblem(f, f, inner_data=(jnp.zeros(3), jnp.zeros(4)), outer_data=jnp.zeros(2))
    with pytest.raises(ValueError, match="outer_data must be a pytree with at least one array"):
        MinibatchProblem(f, f, inner_data=jnp.zeros(3), outer_data=())
    with pytest.raises(
        TypeError, match=r"MinibatchProblem.outer must take a batch: define it as outer\(u, w, batch\)"
    ):
        MinibatchProblem(f, lambda u, w: jnp.sum(w), inner_data=jnp.zeros(3), outer_data=jnp.zeros(2))


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 30),
    b=st.integers(1, 30),
    seed=st.integers(0, 2**16),
    before=st.integers(0, 12),
    count=st.integers(0, 40),
)
def test_shuffle_draws_equal_successive_next(n, b, seed, before, count):
    """``Shuffle.draws(state, count)`` (every epoch's permutation drawn first, as the solvers' unguarded
    loops use it) gives the blocks and the final state of ``count`` calls of ``next``, from any position
    in an epoch."""
    if b > n:
        return
    s = Shuffle(n, b)
    state = s.init(jax.random.PRNGKey(seed))
    nxt = jax.jit(s.next)
    for _ in range(before):
        _, state = nxt(state)
    blocks, after = jax.jit(s.draws, static_argnums=1)(state, count)
    seq, st_ = [], state
    for _ in range(count):
        j, st_ = nxt(st_)
        seq.append(int(j))
    assert blocks.shape == (count,) and np.asarray(blocks).tolist() == seq
    for x, y in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(st_)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ------------------------------------------------------------------------------------ schedules / errors
def test_inverse_power():
    s = inverse_power(0.1, 0.5)
    np.testing.assert_allclose([float(s(k)) for k in (0, 3)], [0.1, 0.05], rtol=1e-6)
    # the tabulated form the solvers' unguarded loops use: init_value * power(k), the same number as
    # the schedule compiled (XLA rewrites a / x^e as a * x^-e); both evaluated here by one program
    for a, e in ((0.1, 0.5), (0.01, 5 / 7), (0.1, 1 / 7), (2.0, 0.0)):
        f = inverse_power(a, e)
        ks = jnp.arange(0, 5000, 7, dtype=jnp.int32)
        direct, tabulated = jax.jit(lambda k, f=f, a=a: (jax.vmap(f)(k), a * f.power(k)))(ks)
        np.testing.assert_array_equal(np.asarray(direct), np.asarray(tabulated))
    with pytest.raises(ValueError, match="init_value must be a positive"):
        inverse_power(0.0, 0.5)


@pytest.mark.parametrize("cls", SOLVERS)
@pytest.mark.parametrize(
    "bad", [0.0, -0.1, float("nan"), optax.constant_schedule(0.0), optax.linear_schedule(0.1, -0.1, 10), "x"]
)
def test_non_positive_step_sizes_raise(cls, bad):
    p = _problem()
    with pytest.raises(ValueError, match=rf"{cls.__name__}.outer_lr must"):
        cls(p, Shuffle(12, 4), Shuffle(8, 4), outer_lr=bad)


@pytest.mark.parametrize("cls", SOLVERS)
def test_mismatched_samplers_raise(cls):
    p = _problem(n=12, m=8)
    with pytest.raises(
        ValueError,
        match=rf"{cls.__name__}.inner_sampler draws from n=8 samples but problem.inner_data has 12",
    ):
        cls(p, Shuffle(8, 4), Shuffle(8, 4))
    with pytest.raises(
        ValueError,
        match=rf"{cls.__name__}.outer_sampler draws from n=12 samples but problem.outer_data has 8",
    ):
        cls(p, Shuffle(12, 4), Shuffle(12, 4))
    with pytest.raises(TypeError, match="must be a sampler"):
        cls(p, 4, Shuffle(8, 4))
    with pytest.raises(TypeError, match="MinibatchProblem"):
        cls(blo.Problem(lambda u, w: 0.0, lambda u, w: 0.0), Shuffle(12, 4), Shuffle(8, 4))


def test_replay_too_short_raises():
    p = _problem(n=12, m=8)
    algo = blo.AmIGO(
        p, Replay([0] * 30, n=12, batch_size=4), Replay([0] * 30, n=8, batch_size=4), inner_steps=2
    )
    state = algo.init(jnp.zeros(1), jnp.zeros(3))
    algo.run(state, 6)  # 6 * (2 + 2 + 1) = 30 inner draws: exactly enough
    with pytest.raises(ValueError, match="inner_sampler replays 30 blocks but 7 steps from draw 0 need 35"):
        algo.run(state, 7)


def test_integer_fields_are_checked():
    p = _problem()
    with pytest.raises(ValueError, match="AmIGO.inner_steps must be an integer >= 1"):
        blo.AmIGO(p, Shuffle(12, 4), Shuffle(8, 4), inner_steps=0)
    with pytest.raises(ValueError, match="StocBiO.neumann_steps"):
        blo.StocBiO(p, Shuffle(12, 4), Shuffle(8, 4), neumann_steps=1.5)
    with pytest.raises(ValueError, match="SABA.memory_init"):
        blo.SABA(p, Shuffle(12, 4), Shuffle(8, 4), memory_init="warm")


# ------------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("cls", SOLVERS)
def test_vmap_over_seeds_equals_separate_runs(cls):
    p = _problem()
    algo = cls(p, Shuffle(12, 4), WithReplacement(8, 4), record=lambda u, w, v: {"u": u})
    u0, w0 = jnp.zeros(1), jnp.zeros(3)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    sv, hv = jax.vmap(lambda k: algo.run(algo.init(u0, w0, k), 20))(keys)
    for i in (0, 2):
        s, h = algo.run(algo.init(u0, w0, keys[i]), 20)
        assert_close(hv["u"][i], h["u"], ulps=256)  # 20 float32 steps, batched vs unbatched kernels
    assert not np.allclose(np.asarray(hv["u"][0]), np.asarray(hv["u"][1]))  # seeds differ
    # step() and run() agree
    s1, _ = algo.step(algo.init(u0, w0, keys[0]))
    s2, _ = algo.run(algo.init(u0, w0, keys[0]), 1)
    assert_close(s2.u, s1.u, ulps=16)


def test_divergence_stops_with_state():
    p = _problem()
    algo = blo.SOBA(p, Shuffle(12, 4), Shuffle(8, 4), inner_lr=1e3, outer_lr=1e3)
    with pytest.raises(blo.NonFiniteError, match="non-finite values") as err:
        algo.run(algo.init(jnp.zeros(1), jnp.zeros(3)), 200)
    assert bool(jnp.all(jnp.isfinite(err.value.state.u)))
