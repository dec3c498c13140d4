"""blojax.models.mlp: the ReLU MLP used as the inner model of the 2-D experiments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from blojax.models.mlp import init_mlp, mlp_apply, mlp_sizes
from conftest import assert_close


def test_shapes_and_sizes():
    p = init_mlp(0, [2, 7, 5, 3])
    assert mlp_sizes(p) == [2, 7, 5, 3]
    assert [l["w"].shape for l in p] == [(2, 7), (7, 5), (5, 3)]
    assert mlp_apply(p, jnp.ones((11, 2))).shape == (11, 3)
    assert mlp_apply(p, jnp.ones((4, 6, 2))).shape == (4, 6, 3)


def test_apply_matches_a_numpy_forward_pass():
    p = init_mlp(1, [3, 4, 2], bias_scale=0.5)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    W1, b1, W2, b2 = (np.asarray(a) for a in (p[0]["w"], p[0]["b"], p[1]["w"], p[1]["b"]))
    ref = np.maximum(x @ W1 + b1, 0) @ W2 + b2
    assert_close(mlp_apply(p, x), ref, ulps=16)  # two small float32 matmuls vs NumPy's


def test_he_init_statistics():
    p = init_mlp(jax.random.key(2), [100, 400, 1])
    w = np.asarray(p[0]["w"])
    assert abs(w.std() - np.sqrt(2 / 100)) < 0.01
    assert np.all(np.asarray(p[0]["b"]) == 0)
    q = init_mlp(jax.random.key(2), [100, 400, 1], scale=2.0, bias_scale=3.0)
    assert abs(np.asarray(q[0]["w"]).std() - 2 * np.sqrt(2 / 100)) < 0.02
    assert abs(np.asarray(q[0]["b"]).std() - 3.0) < 0.4


def test_params_are_a_pytree_usable_with_grad_and_vmap():
    trees = [init_mlp(s, [2, 8, 2]) for s in range(3)]
    p = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)
    out = jax.vmap(lambda q: mlp_apply(q, jnp.ones((4, 2))))(p)
    assert out.shape == (3, 4, 2)
    assert_close(out[1], mlp_apply(trees[1], jnp.ones((4, 2))), ulps=16)
    g = jax.grad(lambda q: jnp.sum(mlp_apply(q, jnp.ones((4, 2))) ** 2))(
        jax.tree_util.tree_map(lambda a: a[0], p)
    )
    assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(
        jax.tree_util.tree_map(lambda a: a[0], p)
    )


@pytest.mark.parametrize("sizes", [[2], [2, 0, 1], [2, 3.5, 1], "abc"])
def test_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        init_mlp(0, sizes)


def test_numpy_seed_init_is_reproducible_and_he_scaled():
    a, b = (
        init_mlp(7, [50, 300, 2], bias_scale=0.5),
        init_mlp(np.random.default_rng(7), [50, 300, 2], bias_scale=0.5),
    )
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a[0]["w"].dtype == jnp.float32
    assert abs(float(np.asarray(a[0]["w"]).std()) - np.sqrt(2 / 50)) < 0.02
    assert abs(float(np.asarray(a[0]["b"]).std()) - 0.5) < 0.1
    assert mlp_sizes(a) == [50, 300, 2]


def test_bad_scale():
    with pytest.raises(ValueError, match="bias_scale"):
        init_mlp(0, [2, 3], bias_scale=-1.0)
