r"""E8: the spectral picture of the hypergradient approximations (PAPER.md §3, E8, Fig. 5).

For an eigenvalue ``lambda`` of ``H``: the inverse applies ``1/lambda``, damping ``1/(lambda + eps)``,
K-term Neumann (= K unrolled SGD steps at a stationary point) ``(1 - (1 - alpha lambda)^K) / lambda``, and
K steps of CG ``(1 - prod_j (1 - lambda / theta_j)) / lambda`` with ``theta_j`` the Ritz values of
``(H, b)``. All invert the high-curvature directions and shrink the low-curvature ones; Neumann with K
terms behaves like damping with ``eps ~ 1 / (alpha K)``.

The maps (:mod:`blojax.analysis.spectral`) are checked against the code: on random PSD matrices the
matrix each strategy of the library applies (built from its solver, :func:`spectral.operator_matrix`)
must equal ``Q diag(h(lambda)) Q^T`` — in particular its eigenvalues are ``h(lambda_i)`` — and CG's
output must equal ``Q diag(h_CG(lambda)) Q^T b``.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import blojax as blo
from .claims import Claim
from blojax.analysis import spectral

from . import common, toolkit
from .common import check_field
from .figures import spectral as figures

DESCRIPTION = "E8 spectral picture: lambda -> h(lambda) for inverse, damped, Neumann/unroll and CG, checked against the code (Fig. 5)"


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of E8.

    lam_min, lam_max: eigenvalue range of the plot (6 decades; alpha = 1 / lam_max).
    ks: Neumann terms / unrolled steps (paper figure: a few K; we use 1, 10, 100, 1000).
    eps: damping values, chosen as 1 / (alpha K) for the same K so the pairs can be compared.
    cg_ks: CG steps for the CG panel (on a random matrix with the eigenvalues marked).
    n, rank, cond, trials: size, rank and condition number of the random PSD matrices of the check, and
      how many (random eigenvectors; eigenvalues log-uniform in [1, cond]; rank < n gives a null space).
    seed: NumPy seed of the random matrices.
    """

    lam_min: float = 1e-4
    lam_max: float = 1e2
    ks: tuple = (1, 10, 100, 1000)
    eps: tuple = (1e2, 1e1, 1.0, 1e-1)
    cg_ks: tuple = (1, 2, 4, 6)
    n: int = 12
    rank: int = 9
    cond: float = 100.0
    trials: int = 10
    seed: int = 0

    @classmethod
    def quick(cls) -> "Config":
        """Fewer random matrices."""
        return cls(trials=3)

    def validate(self) -> None:
        c = "Config"
        check_field(
            0 < self.lam_min < self.lam_max,
            c,
            "lam_min",
            f"positive and < lam_max={self.lam_max}",
            self.lam_min,
        )
        for field in ("ks", "cg_ks"):
            v = getattr(self, field)
            check_field(
                len(v) > 0 and all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in v),
                c,
                field,
                "a non-empty tuple of positive integers (K > 0)",
                v,
            )
        check_field(
            len(self.eps) > 0 and all(e >= 0 for e in self.eps),
            c,
            "eps",
            "a non-empty tuple of eps >= 0",
            self.eps,
        )
        check_field(isinstance(self.n, int) and self.n >= 2, c, "n", "an integer >= 2", self.n)
        check_field(
            isinstance(self.rank, int) and 1 <= self.rank <= self.n,
            c,
            "rank",
            f"in [1, n={self.n}]",
            self.rank,
        )
        check_field(self.cond >= 1, c, "cond", ">= 1", self.cond)
        check_field(
            isinstance(self.trials, int) and self.trials > 0, c, "trials", "a positive integer", self.trials
        )
        check_field(max(self.cg_ks) <= self.n, c, "cg_ks", f"<= n={self.n}", self.cg_ks)


@dataclasses.dataclass(frozen=True)
class Deviation:
    """The largest relative deviation, over the random matrices, of one quantity from its closed form.

    strategy: the strategy (``"inverse (Exact)"``, ``"Neumann K=10"``, ``"CG K=4"``, ...).
    quantity: ``"matrix"`` (``S`` vs ``Q diag(h(lambda)) Q^T``), ``"eigenvalues"`` (of ``S`` vs
      ``h(lambda_i)``) or ``"output"`` (CG's ``x`` vs ``Q diag(h_CG(lambda)) Q^T b``).
    value: ``max |S - ref| / max |ref|``.
    """

    strategy: str
    quantity: str
    value: float


@dataclasses.dataclass(frozen=True)
class Result:
    """The maps ``lambda -> h(lambda)`` and their check against the library's strategies.

    lam: ``(400,)`` eigenvalues, log-spaced over ``[lam_min, lam_max]``.
    inverse: ``1 / lam``.
    neumann: ``(len(ks), 400)``: K-term Neumann (= K unrolled steps) at ``alpha = 1 / lam_max``.
    damped: ``(len(eps), 400)``: ``1 / (lam + eps)``.
    cg_eigenvalues: ``(n,)`` eigenvalues of the positive definite ``H`` of the CG example.
    cg_grid: ``(400,)`` where CG's maps are evaluated.
    cg_maps: ``(len(cg_ks), 400)``: ``h_CG`` after K steps on ``(H, b)``.
    cg_ritz: per ``K`` of ``cg_ks``, the K Ritz values ``theta_j``.
    deviations: the check (one entry per strategy and quantity, in the order computed).
    alpha: the Neumann / unroll step ``1 / lam_max``.
    """

    config: Config
    lam: np.ndarray
    inverse: np.ndarray
    neumann: np.ndarray
    damped: np.ndarray
    cg_eigenvalues: np.ndarray
    cg_grid: np.ndarray
    cg_maps: np.ndarray
    cg_ritz: tuple[np.ndarray, ...]
    deviations: tuple[Deviation, ...]
    alpha: float

    def max_rel_deviation(self) -> dict[str, float]:
        """``{"<strategy>: <quantity>": value}`` (the keys of ``results.json``)."""
        return {f"{d.strategy}: {d.quantity}": d.value for d in self.deviations}

    def to_dict(self) -> dict:
        cg_example: dict = {"eigenvalues": self.cg_eigenvalues}
        for K, h, theta in zip(self.config.cg_ks, self.cg_maps, self.cg_ritz):
            cg_example[f"K={K}"] = h
            cg_example[f"ritz K={K}"] = theta
        check = dict(max_rel_deviation=self.max_rel_deviation(), alpha=self.alpha)
        return common.to_jsonable(dict(check=check, cg_example=cg_example))


def random_psd(rng, n, rank, cond):
    """``Q diag(s) Q^T`` with ``rank`` eigenvalues log-uniform in ``[1, cond]`` and ``n - rank`` zeros."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.zeros(n)
    s[:rank] = np.exp(rng.uniform(0.0, np.log(cond), rank))
    return (Q * s) @ Q.T


def _methods(cfg: Config, alpha):
    methods: dict[str, blo.Method] = {"inverse (Exact)": blo.Exact()}
    for K in cfg.ks[:3]:  # the matrices are built column by column; K up to 100 is plenty here
        methods[f"Neumann K={K}"] = blo.Neumann(terms=K, lr=alpha)
        methods[f"Unroll K={K}"] = blo.Unroll(steps=K)
    for e in cfg.eps:
        if e > 0:
            methods[f"Damped eps={e:g}"] = blo.Damped(eps=e, rtol=1e-14, max_iters=10 * cfg.n)
    methods["Identity"] = blo.Identity(lr=alpha)
    return methods


def _check(cfg: Config) -> dict:
    """Max relative deviation of the library's applied matrices from ``Q diag(h) Q^T`` (and of their
    eigenvalues from ``h(lambda_i)``) over random PSD matrices; CG on random positive definite ones.
    All trials run as one vmapped, compiled computation."""
    rng = np.random.default_rng(cfg.seed)
    Hs = np.stack([random_psd(rng, cfg.n, cfg.rank, cfg.cond) for _ in range(cfg.trials)])
    Hpds = np.stack([random_psd(rng, cfg.n, cfg.n, cfg.cond) for _ in range(cfg.trials)])
    bs = rng.standard_normal((cfg.trials, cfg.n))

    def applied(H, Hpd, b):
        alpha = 1.0 / jnp.linalg.eigvalsh(H)[-1]
        mats = {name: spectral.operator_matrix(m, H, lr=alpha) for name, m in _methods(cfg, alpha).items()}
        cgs = {K: blo.linalg.cg(lambda v: Hpd @ v, b, K)[0] for K in cfg.cg_ks}
        return mats, cgs

    mats, cgs = jax.jit(jax.vmap(applied))(jnp.asarray(Hs), jnp.asarray(Hpds), jnp.asarray(bs))
    toolkit.require_finite("spectral (the strategies' applied matrices and CG outputs)", (mats, cgs))
    worst: dict[tuple[str, str], float] = {}

    def upd(key, val):
        worst[key] = max(worst.get(key, 0.0), float(val))

    for t in range(cfg.trials):
        lam, Q = np.linalg.eigh(Hs[t])
        alpha = 1.0 / lam.max()
        for name, m in _methods(cfg, alpha).items():
            S = np.asarray(mats[name][t])
            h = np.asarray(m.response(lam, lr=alpha))
            ref = (Q * h) @ Q.T
            upd((name, "matrix"), np.max(np.abs(S - ref)) / np.max(np.abs(ref)))
            ev = np.sort(np.linalg.eigvalsh(0.5 * (S + S.T)))
            upd((name, "eigenvalues"), np.max(np.abs(ev - np.sort(h))) / np.max(np.abs(h)))
        lam2, Q2 = np.linalg.eigh(Hpds[t])
        for K in cfg.cg_ks:
            h = spectral.cg(lam2, spectral.ritz_values(Hpds[t], bs[t], K))
            ref = Q2 @ (h * (Q2.T @ bs[t]))
            upd((f"CG K={K}", "output"), np.max(np.abs(np.asarray(cgs[K][t]) - ref)) / np.max(np.abs(ref)))
    return {f"{s}: {q}": v for (s, q), v in worst.items()}


def run(config: Config, ctx: common.RunContext | None = None) -> Result:
    """The maps on the eigenvalue grid, the CG example, and the check (one ``ctx.stage``)."""
    config.validate()
    ctx = common.ensure_context(ctx)
    cfg = config
    with jax.enable_x64(True):
        lam = np.logspace(np.log10(cfg.lam_min), np.log10(cfg.lam_max), 400)
        alpha = 1.0 / cfg.lam_max
        inverse = np.asarray(spectral.inverse(lam))
        neumann = np.stack([np.asarray(spectral.neumann(lam, K, alpha)) for K in cfg.ks])
        damped = np.stack([np.asarray(spectral.damped(lam, e)) for e in cfg.eps])
        # CG example: a random positive definite matrix with spread eigenvalues and a random b
        rng = np.random.default_rng(cfg.seed + 1)
        H = random_psd(rng, cfg.n, cfg.n, cfg.cond)
        b = rng.standard_normal(cfg.n)
        ev = np.linalg.eigvalsh(H)
        grid = np.logspace(np.log10(ev.min()) - 1, np.log10(ev.max()) + 0.3, 400)
        ritz = tuple(spectral.ritz_values(H, b, K) for K in cfg.cg_ks)
        cg_maps = np.stack([spectral.cg(grid, theta) for theta in ritz])
        check = ctx.stage("check", _check, cfg)
    # in the order computed (a resumed stage comes back as a dict with sorted keys)
    order = [(name, q) for name in _methods(cfg, alpha) for q in ("matrix", "eigenvalues")]
    order += [(f"CG K={K}", "output") for K in cfg.cg_ks]
    deviations = tuple(Deviation(s, q, float(check[f"{s}: {q}"])) for s, q in order)
    return Result(
        config=cfg,
        lam=lam,
        inverse=inverse,
        neumann=neumann,
        damped=damped,
        cg_eigenvalues=ev,
        cg_grid=grid,
        cg_maps=cg_maps,
        cg_ritz=ritz,
        deviations=deviations,
        alpha=alpha,
    )


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    """``spectral.png`` (:func:`blojax.experiments.figures.spectral.plot`)."""
    return figures.plot(result, out_dir)


# ------------------------------------------------------------------------------------ claims ledger

CLAIMS = (
    Claim(
        "E8.spectral-maps",
        "Spectral picture: the matrix each strategy applies equals Q diag(h(lambda)) Q^T with the paper's map h "
        "(inverse 1/lambda, damped 1/(lambda + eps), K-term Neumann (1 - (1 - alpha lambda)^(K+1)) / lambda, CG's "
        "polynomial): largest relative deviation <= 1e-10",
        "Fig. 5 (the maps; exact by construction)",
        lambda r: {
            "max deviation": max(r["check"]["max_rel_deviation"][k] for k in r["check"]["max_rel_deviation"])
        },
        lambda o: o["max deviation"] <= 1e-10,
        "max relative deviation <= 1e-10",
    ),
)


if __name__ == "__main__":
    from blojax.runner.cli import run_module

    raise SystemExit(run_module(__name__))
