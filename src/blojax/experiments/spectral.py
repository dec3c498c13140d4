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

from . import common
from .common import check_field

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

    def validate(self) -> "Config":
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
        return self


@dataclasses.dataclass
class Result:
    config: Config
    lam: np.ndarray
    curves: dict
    cg_example: dict
    check: dict

    def to_dict(self) -> dict:
        return common.to_jsonable(
            dict(check=self.check, cg_example={k: v for k, v in self.cg_example.items() if k != "grid"})
        )


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
    worst: dict = {}

    def upd(key, val):
        worst[key] = max(worst.get(key, 0.0), float(val))

    for t in range(cfg.trials):
        lam, Q = np.linalg.eigh(Hs[t])
        alpha = 1.0 / lam.max()
        for name, m in _methods(cfg, alpha).items():
            S = np.asarray(mats[name][t])
            h = np.asarray(m.response(lam, lr=alpha))
            ref = (Q * h) @ Q.T
            upd(f"{name}: matrix", np.max(np.abs(S - ref)) / np.max(np.abs(ref)))
            ev = np.sort(np.linalg.eigvalsh(0.5 * (S + S.T)))
            upd(f"{name}: eigenvalues", np.max(np.abs(ev - np.sort(h))) / np.max(np.abs(h)))
        lam2, Q2 = np.linalg.eigh(Hpds[t])
        for K in cfg.cg_ks:
            h = spectral.cg(lam2, spectral.ritz_values(Hpds[t], bs[t], K))
            ref = Q2 @ (h * (Q2.T @ bs[t]))
            upd(f"CG K={K}: output", np.max(np.abs(np.asarray(cgs[K][t]) - ref)) / np.max(np.abs(ref)))
    return worst


def run(config: Config | None = None, ctx: common.Context | None = None) -> Result:
    cfg = (config or Config()).validate()
    ctx = ctx or common.Context()
    with jax.enable_x64(True):
        lam = np.logspace(np.log10(cfg.lam_min), np.log10(cfg.lam_max), 400)
        alpha = 1.0 / cfg.lam_max
        curves = {"inverse": np.asarray(spectral.inverse(lam))}
        for K in cfg.ks:
            curves[f"Neumann / Unroll K={K}"] = np.asarray(spectral.neumann(lam, K, alpha))
        for e in cfg.eps:
            curves[f"Damped eps={e:g}"] = np.asarray(spectral.damped(lam, e))
        # CG example: a random positive definite matrix with spread eigenvalues and a random b
        rng = np.random.default_rng(cfg.seed + 1)
        H = random_psd(rng, cfg.n, cfg.n, cfg.cond)
        b = rng.standard_normal(cfg.n)
        ev = np.linalg.eigvalsh(H)
        grid = np.logspace(np.log10(ev.min()) - 1, np.log10(ev.max()) + 0.3, 400)
        cg_example = dict(eigenvalues=ev, grid=grid)
        for K in cfg.cg_ks:
            theta = spectral.ritz_values(H, b, K)
            cg_example[f"K={K}"] = spectral.cg(grid, theta)
            cg_example[f"ritz K={K}"] = theta
        check = ctx.stage("check", _check, cfg)
    return Result(cfg, lam, curves, cg_example, dict(max_rel_deviation=check, alpha=alpha))


def plot(result: Result, out_dir) -> list[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = pathlib.Path(out_dir)
    cfg = result.config
    lam = result.lam
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    blues = plt.get_cmap("Blues")
    oranges = plt.get_cmap("Oranges")
    for ax, scaled in ((axes[0], False), (axes[1], True)):
        ax.plot(
            lam,
            lam * result.curves["inverse"] if scaled else result.curves["inverse"],
            "k-",
            lw=2.5,
            label=r"inverse $1/\lambda$",
        )
        for i, K in enumerate(cfg.ks):
            y = result.curves[f"Neumann / Unroll K={K}"]
            ax.plot(
                lam,
                lam * y if scaled else y,
                "-",
                color=blues(0.4 + 0.6 * i / max(1, len(cfg.ks) - 1)),
                label=rf"Neumann / Unroll K={K} ($\alpha = 1/\lambda_{{max}}$)",
            )
        for i, e in enumerate(cfg.eps):
            y = result.curves[f"Damped eps={e:g}"]
            ax.plot(
                lam,
                lam * y if scaled else y,
                "--",
                color=oranges(0.4 + 0.6 * i / max(1, len(cfg.eps) - 1)),
                label=rf"damped $\epsilon$={e:g}",
            )
        ax.set_xscale("log")
        ax.set_xlabel(r"eigenvalue $\lambda$ of $H$")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"$h(\lambda)$ (what replaces $1/\lambda$)")
    axes[0].set_title(r"Spectral maps $\lambda \to h(\lambda)$")
    axes[0].legend(fontsize=7)
    axes[1].set_ylabel(r"$\lambda\, h(\lambda)$ (1 = exactly inverted)")
    axes[1].set_title(
        r"Fraction inverted: high curvature inverted, low curvature ignored"
        "\n"
        r"(K-term Neumann $\approx$ damping with $\epsilon = 1/(\alpha K)$)",
        fontsize=9,
    )
    ex = result.cg_example
    ax = axes[2]
    greens = plt.get_cmap("Greens")
    for i, K in enumerate(cfg.cg_ks):
        ax.plot(
            ex["grid"],
            ex["grid"] * ex[f"K={K}"],
            color=greens(0.4 + 0.6 * i / max(1, len(cfg.cg_ks) - 1)),
            label=f"CG, K={K}",
        )
    for j, e in enumerate(ex["eigenvalues"]):
        ax.axvline(e, color="0.6", lw=0.8, ls=":", label="eigenvalues of H" if j == 0 else None)
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(-1.5, 2.5)
    ax.set_xlabel(r"$\lambda$")
    ax.set_ylabel(r"$\lambda\, h_{CG}(\lambda)$")
    ax.set_title(
        "CG: a polynomial fitted to the eigenvalues that b excites\n"
        r"($h_{CG}(\lambda) = (1 - \prod_j (1 - \lambda/\theta_j))/\lambda$, $\theta_j$ Ritz values)",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    worst = max(result.check["max_rel_deviation"].values())
    fig.suptitle(
        f"E8: spectral picture of the hypergradient approximations (checked against the library's solvers on "
        f"{cfg.trials} random PSD matrices: max relative deviation {worst:.1e})",
        fontsize=10,
    )
    fig.tight_layout()
    return [common.save_figure(fig, out_dir / "spectral.png")]


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
