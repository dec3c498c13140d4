"""Stochastic and amortized bilevel solvers on minibatch oracles.

    import blojax as blo
    from blojax.stochastic import MinibatchProblem, Shuffle
    problem = MinibatchProblem(inner=f, outer=F, inner_data=train, outer_data=val)  # f(u, w, batch)
    algo = blo.SOBA(problem, Shuffle(n_train, 64), Shuffle(n_val, 64))            # or SABA, AmIGO, ...
    state, history = algo.run(algo.init(u0, w0, jax.random.PRNGKey(0)), steps=1000)

Modules: :mod:`.samplers` (seeded block samplers), :mod:`.oracles` (the problem with its data),
:mod:`.schedules` (step sizes as optax schedules), :mod:`.base` (state and the shared run loop),
:mod:`.solvers` (the five algorithms). See docs/stochastic.md.
"""

from .base import StochasticInfo, StochasticSolver, StochasticState
from .oracles import MinibatchProblem
from .samplers import Replay, Shuffle, WithReplacement
from .schedules import as_schedule, inverse_power
from .solvers import F2SA, SABA, SOBA, AmIGO, StocBiO

__all__ = [
    "MinibatchProblem",
    "Shuffle",
    "WithReplacement",
    "Replay",
    "inverse_power",
    "as_schedule",
    "StochasticSolver",
    "StochasticState",
    "StochasticInfo",
    "SOBA",
    "SABA",
    "AmIGO",
    "StocBiO",
    "F2SA",
]
