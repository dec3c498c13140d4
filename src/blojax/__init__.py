"""blojax: gradient-based bilevel optimization in JAX, and a laboratory for its implicit bias.

import blojax as blo, optax
problem = blo.Problem(inner=f, outer=F)                # f(u, w), F(u, w) -> scalar
inner   = blo.InnerLoop(optax.sgd(0.1), steps=100)
method  = blo.Neumann(terms=20, lr=0.1)
g, info = blo.hypergradient(problem, u, w, method, inner=inner)
algo    = blo.WarmStart(problem, inner, method, outer=optax.adam(1e-2))
state, history = algo.run(algo.init(u0, w0), steps=1000)
w = blo.solve(problem, u, w0, inner=inner, method=method)   # differentiable: jax.grad uses method
"""

from . import analysis, linalg
from .algorithms import BilevelState, ColdStart, NonFiniteError, WarmStart
from .hypergrad import CG, Damped, Exact, HypergradInfo, Identity, Method, Neumann, Unroll, hypergradient
from .inner import ClosedForm, InnerInfo, InnerLoop
from .problem import Problem
from .status import Status
from .stochastic import F2SA, SABA, SOBA, AmIGO, StocBiO  # blojax.stochastic: minibatch solvers
from .transform import implicit_diff, solve

__version__ = "0.1.0"

__all__ = [
    "Problem",
    "InnerLoop",
    "ClosedForm",
    "InnerInfo",
    "Method",
    "Unroll",
    "Neumann",
    "CG",
    "Damped",
    "Exact",
    "Identity",
    "hypergradient",
    "HypergradInfo",
    "Status",
    "solve",
    "implicit_diff",
    "ColdStart",
    "WarmStart",
    "BilevelState",
    "NonFiniteError",
    "SOBA",
    "SABA",
    "AmIGO",
    "StocBiO",
    "F2SA",
    "analysis",
    "linalg",
]
