"""The experiments' shared toolkit: losses against closed forms, statistics, stacking, retraining
through InnerLoop.run (equal to a hand-written SGD loop), and the one NaN policy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import blojax as blo
from blojax.experiments import toolkit as tk


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_prob_cross_entropy_equals_integer_cross_entropy_on_one_hot(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 3
    labels = rng.integers(0, c, size=n)
    with jax.enable_x64(True):
        a = tk.prob_cross_entropy(jnp.asarray(logits), jax.nn.one_hot(labels, c, dtype=jnp.float64))
        b = tk.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
        # closed form: mean_i (logsumexp(z_i) - z_{i, y_i})
        m = logits.max(-1, keepdims=True)
        lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
        ref = np.mean(lse - logits[np.arange(n), labels])
        np.testing.assert_allclose(float(a), ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(float(b), ref, rtol=1e-12, atol=1e-14)


def test_accuracy_counts_argmax_matches():
    logits = jnp.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert float(tk.accuracy(logits, jnp.array([1, 0, 0, 1]))) == 0.5


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e6, 1e6)))
def test_seed_stats(x):
    s = tk.seed_stats(x)
    assert s["values"] == x.tolist()
    assert s["min"] == x.min() and s["max"] == x.max()
    np.testing.assert_allclose(s["mean"], x.mean(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(s["std"], x.std(), rtol=1e-12, atol=1e-9)
    assert s["min"] <= s["mean"] + 1e-9 * (1 + abs(s["mean"])) and s["mean"] <= s["max"] + 1e-9 * (
        1 + abs(s["max"])
    )


def test_seed_stats_empty_is_an_error():
    with pytest.raises(ValueError, match="at least one value"):
        tk.seed_stats([])


def test_tree_stack_and_concat():
    trees = [{"a": np.full((2,), i), "b": (np.array(i),)} for i in range(3)]
    s = tk.tree_stack(trees)
    assert s["a"].shape == (3, 2) and s["b"][0].tolist() == [0, 1, 2]
    c = tk.tree_concat([{"a": np.zeros((2, 1))}, {"a": np.ones((3, 1))}])
    assert c["a"].shape == (5, 1) and c["a"][2:].sum() == 3
    with pytest.raises(ValueError, match="at least one pytree"):
        tk.tree_stack([])


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 25), st.floats(0.01, 0.3))
def test_retrain_equals_hand_written_sgd(seed, steps, lr):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        A = jnp.asarray(rng.normal(size=(5, 3)))
        u = jnp.asarray(rng.normal(size=5))
        w0 = jnp.asarray(rng.normal(size=3))
        loss = lambda u, w: 0.5 * jnp.mean((A @ w - u) ** 2)  # noqa: E731
        w, info = tk.retrain(loss, u, w0, lr=lr, steps=steps)
        ref = w0
        for _ in range(steps):
            ref = ref - lr * jax.grad(loss, argnums=1)(u, ref)
        np.testing.assert_allclose(np.asarray(w), np.asarray(ref), rtol=1e-12, atol=1e-14)


def test_retrain_rejects_bad_steps_and_raises_on_divergence():
    with pytest.raises(ValueError, match="steps must be a non-negative int"):
        tk.retrain(lambda u, w: jnp.sum(w**2), 0.0, jnp.ones(2), lr=0.1, steps=-1)
    with pytest.raises(Exception, match="non-finite"):
        w, _ = tk.retrain(lambda u, w: jnp.sum(jnp.exp(w * 1e3)), 0.0, jnp.ones(2), lr=1.0, steps=5)
        jax.block_until_ready(w)
    w, _ = tk.retrain(lambda u, w: jnp.sum(jnp.exp(w * 1e3)), 0.0, jnp.ones(2), lr=1.0, steps=5, throw=False)
    assert not np.all(np.isfinite(np.asarray(w)))
    w, _ = tk.retrain(
        lambda u, w: 0.5 * jnp.sum(w**2), 0.0, jnp.ones(2), lr=0.5, steps=3, optimizer=optax.sgd(1.0)
    )
    np.testing.assert_allclose(np.asarray(w), 0.0, atol=0)


def test_require_finite():
    tk.require_finite("ok", {"a": np.ones(3)}, diverged_step=np.array([-1, -1]))
    with pytest.raises(blo.NonFiniteError, match=r"warm-start: .* from step 4 \(seed index 1, 2\)"):
        tk.require_finite("warm-start", diverged_step=np.array([-1, 7, 4]))
    with pytest.raises(blo.NonFiniteError, match="acc: non-finite"):
        tk.require_finite("acc", {"x": np.array([1.0, np.nan])})
    tk.require_finite("ints are fine", np.array([1, 2]))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 12), st.floats(0.01, 0.3))
def test_retrain_stochastic_equals_hand_written_sgd_on_fresh_batches(seed, steps, lr):
    """w_{t+1} = w_t - lr grad_w loss(u, w_t, b_t), the batch b_t changing every step."""
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        A = jnp.asarray(rng.normal(size=(5, 3)))
        u = jnp.asarray(rng.normal(size=5))
        w0 = jnp.asarray(rng.normal(size=3))
        noise = jnp.asarray(rng.normal(size=(steps, 5)))
        loss = lambda u, w, b: 0.5 * jnp.mean((A @ w - u - b) ** 2)  # noqa: E731
        w = tk.retrain_stochastic(loss, u, w0, noise, lr=lr)
        ref = w0
        for t in range(steps):
            ref = ref - lr * jax.grad(loss, argnums=1)(u, ref, noise[t])
        np.testing.assert_allclose(np.asarray(w), np.asarray(ref), rtol=1e-12, atol=1e-14)
        if steps:  # one fixed batch repeated: the same as retrain on loss(u, ., b)
            same = jnp.broadcast_to(noise[0], noise.shape)
            w_fixed, _ = tk.retrain(lambda u, w: loss(u, w, noise[0]), u, w0, lr=lr, steps=steps)
            np.testing.assert_allclose(
                np.asarray(tk.retrain_stochastic(loss, u, w0, same, lr=lr)), np.asarray(w_fixed), rtol=1e-12
            )


def test_retrain_stochastic_raises_on_divergence():
    loss = lambda u, w, b: jnp.sum(jnp.exp(w * 1e3 * b))  # noqa: E731
    with pytest.raises(Exception, match="non-finite retrained"):
        jax.block_until_ready(tk.retrain_stochastic(loss, 0.0, jnp.ones(2), jnp.ones((5, 1)), lr=1.0))
    w = tk.retrain_stochastic(loss, 0.0, jnp.ones(2), jnp.ones((5, 1)), lr=1.0, throw=False)
    assert not np.all(np.isfinite(np.asarray(w)))


def test_cold_hypergradient_names_the_paper_methods():
    u = tk.cold_hypergradient("unroll", steps=7, terms=3, lr=0.1)
    assert isinstance(u, blo.Unroll) and u == blo.Unroll(7, remat=True)
    assert tk.cold_hypergradient("neumann", steps=7, terms=3, lr=0.1) == blo.Neumann(terms=3, lr=0.1)
    assert tk.cold_hypergradient("cg", steps=7, terms=3, lr=0.1) == blo.CG(iters=3)
    assert tk.COLD_METHODS == ("unroll", "neumann", "cg")
    with pytest.raises(ValueError, match="method must be one of"):
        tk.cold_hypergradient("exact", steps=7, terms=3, lr=0.1)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 3))
def test_nan_unless_finite_marks_numbers_of_a_non_finite_model(seed, n_bad):
    """The value where every leaf of the model is finite, NaN (same shape, dtype) where one is not;
    under vmap, per entry: a diverged model's accuracy (argmax of NaN logits is a valid class, so a
    finite number) becomes NaN, which require_finite then reports."""
    rng = np.random.default_rng(seed)
    w = {"a": rng.normal(size=(4, 3)).astype(np.float32), "b": rng.normal(size=(4,)).astype(np.float32)}
    bad = rng.choice(4, size=n_bad, replace=False)
    w["a"][bad, rng.integers(0, 3)] = np.nan if seed % 2 else np.inf
    acc = jnp.asarray(rng.uniform(size=4), jnp.float32)
    out = np.asarray(jax.jit(jax.vmap(tk.nan_unless_finite))(acc, jax.tree_util.tree_map(jnp.asarray, w)))
    assert out.dtype == np.float32
    expect = np.where(np.isin(np.arange(4), bad), np.nan, np.asarray(acc))
    np.testing.assert_array_equal(out, expect)
    if n_bad:
        with pytest.raises(blo.NonFiniteError):
            tk.require_finite("retrained accuracy", out)
    # no host callback in the program (JAX's persistent cache stores it)
    assert "callback" not in jax.jit(tk.nan_unless_finite).lower(acc[0], w).as_text()


class _Ctx:
    def scan(self, chunk, carry, n, key, desc):
        carry, out = chunk(carry, n)
        return carry, out


def test_scan_blocks_checks_every_blocks_evaluation():
    """scan_blocks raises NonFiniteError (naming what and the hint) when a block's eval holds NaN,
    as it does for a diverged state."""
    from blojax.algorithms import BilevelState

    state = BilevelState(*(jnp.zeros(()) for _ in range(5)), jnp.asarray(0), jnp.asarray(-1))

    def block(states, b, value):
        return states, {"F": jnp.zeros(())}, {"retrain": jnp.where(b == 1, value, 0.5)}

    states, hist = tk.scan_blocks(
        _Ctx(), block, {"warm": state}, 3, (jnp.asarray(0.7),), what="x", hint="lower y", key="k", desc="d"
    )
    np.testing.assert_array_equal(np.asarray(hist["eval"]["retrain"]), np.float32([0.5, 0.7, 0.5]))
    with pytest.raises(blo.NonFiniteError, match=r"x, evaluation of a block \(lower y\)"):
        tk.scan_blocks(
            _Ctx(),
            block,
            {"warm": state},
            3,
            (jnp.asarray(np.nan),),
            what="x",
            hint="lower y",
            key="k",
            desc="d",
        )
