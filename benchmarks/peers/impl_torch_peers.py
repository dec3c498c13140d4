"""torchopt, higher and Betty implementations of problems 1-3 (torch, CPU, float32).

Each is written the way the library's documentation shows: torchopt's ``custom_root`` implicit
differentiation with its linear solvers and its differentiable ``MetaSGD``; higher's
``innerloop_ctx``; Betty's ``ImplicitProblem``/``Engine`` with its ``cg``/``neumann``/``darts``
hypergradient types. Settings match the JAX side: T = 100 SGD steps at the same step size, K = 20
solver iterations with zero tolerances.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch

from problems import K_SOLVE, T_INNER

# torchopt 0.7.3 calls functorch.vjp, which torch 2.13 flags as deprecated on every call.
warnings.filterwarnings("ignore", message="We've integrated functorch into PyTorch", category=FutureWarning)


def _quiet_betty():
    """Betty logs every engine's set-up at INFO to stdout; keep the benchmark's output to its tables."""
    from betty.logging.logger_base import get_logger

    get_logger().setLevel(logging.WARNING)


torch.set_default_dtype(torch.float32)

# run.py --device cuda sets this before importing: every tensor and module of the torch peers lives there.
DEVICE = torch.device(os.environ.get("BLOJAX_BENCH_TORCH_DEVICE", "cpu"))


class NotAvailable(Exception):
    """The library has no such method (the reason is the message)."""


def _t(x):
    return torch.as_tensor(np.asarray(x)).to(DEVICE)


def ridge_f(u, w, X, y):
    r = X @ w - y
    return 0.5 * torch.mean(r * r) + 0.5 * torch.sum(torch.exp(u) * w * w)


def ridge_F(w, Xv, yv):
    r = Xv @ w - yv
    return 0.5 * torch.mean(r * r)


class _W(torch.nn.Module):
    def __init__(self, w0):
        super().__init__()
        self.w = torch.nn.Parameter(_t(w0).clone())


def _version(pkg):
    from importlib import metadata

    return metadata.version(pkg)


def p1_units_torch(data, n=50):
    """torch's unit prices on problem 1, as ``impl_blojax.p1_units`` takes JAX's: ``n`` gradients
    ``grad_w f`` (reverse mode) and ``n`` Hessian-vector products from one graph of ``grad_w f``
    built once (``create_graph=True``, then reverse-over-reverse with ``retain_graph``: torch's
    cheapest repeated HVP, the analogue of linearizing once), each in a plain loop of eager calls."""
    u, w, X, y = (_t(data[k]) for k in ("u0", "w0", "X", "y"))
    w = w + 0.01

    def grads():
        w_ = w
        for _ in range(n):
            w_ = w_.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(ridge_f(u, w_, X, y), w_)
            w_ = w_ - 1e-3 * g
        return w_

    def hvps():
        w_ = w.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(ridge_f(u, w_, X, y), w_, create_graph=True)
        v = w
        for _ in range(n):
            (h,) = torch.autograd.grad(g, w_, v, retain_graph=True)
            v = h / (torch.linalg.norm(h) + 1e-30)
        return v

    return dict(grad=(grads, n), hvp=(hvps, n))


# ------------------------------------------------------------------------------------------------ torchopt
class TorchOpt:
    NAME = "torchopt"

    @staticmethod
    def version():
        return f"{_version('torchopt')} (torch {torch.__version__})"

    @staticmethod
    def p1(task, data):
        import torchopt

        alpha = data["alpha"]
        u0, w0, X, y, Xv, yv = (_t(data[k]) for k in ("u0", "w0", "X", "y", "Xv", "yv"))

        if task == "unroll":

            def run():
                u = u0.clone().requires_grad_(True)
                net = _W(w0)
                opt = torchopt.MetaSGD(net, lr=alpha)
                for _ in range(T_INNER):
                    opt.step(ridge_f(u, net.w, X, y))
                (g,) = torch.autograd.grad(ridge_F(net.w, Xv, yv), u)
                return g

            return run, lambda g: g.detach().cpu().numpy()

        solve = {
            "cg": lambda: torchopt.linear_solve.solve_cg(maxiter=K_SOLVE, rtol=0.0, atol=0.0),
            "normal_cg": lambda: torchopt.linear_solve.solve_normal_cg(maxiter=K_SOLVE, rtol=0.0, atol=0.0),
            # torchopt's ns with maxiter=m sums m + 1 terms: alpha * sum_{j=0}^{m} (I - alpha H)^j.
            "neumann": lambda: torchopt.linear_solve.solve_inv(ns=True, maxiter=K_SOLVE - 1, alpha=alpha),
        }[task]()

        def objective(w, u, X_, y_):
            return ridge_f(u, w, X_, y_)

        optimality = torch.func.grad(objective, argnums=0)

        @torchopt.diff.implicit.custom_root(optimality, argnums=1, solve=solve)
        def inner_solve(w, u, X_, y_):
            opt = torchopt.sgd(lr=alpha)
            state = opt.init(w)
            with torch.enable_grad():
                w = w.detach().requires_grad_(True)
                for _ in range(T_INNER):
                    (g,) = torch.autograd.grad(ridge_f(u.detach(), w, X_, y_), w)
                    updates, state = opt.update(g, state, inplace=False)
                    w = torchopt.apply_updates(w, updates, inplace=False).detach().requires_grad_(True)
            return w.detach()

        def run():
            u = u0.clone().requires_grad_(True)
            w_t = inner_solve(w0.clone(), u, X, y)
            (g,) = torch.autograd.grad(ridge_F(w_t, Xv, yv), u)
            return g

        return run, lambda g: g.detach().cpu().numpy()

    @staticmethod
    def p2(data, steps=None):
        import torchopt

        steps = steps or data["steps"]
        net0 = _mlp(data)
        Xo, yo, ys = _t(data["Xo"]), _t(data["yo"]).long(), _t(data["ys"]).long()

        def run():
            net = _mlp(data)
            u = torch.nn.Parameter(_t(data["u0"]).clone())
            inner = torchopt.MetaSGD(net, lr=data["inner_lr"])
            outer = torch.optim.Adam([u], lr=data["outer_lr"])
            Fs = []
            for _ in range(steps):
                inner.step(torch.nn.functional.cross_entropy(net(u), ys))
                F = torch.nn.functional.cross_entropy(net(Xo), yo)
                outer.zero_grad()
                F.backward()
                outer.step()
                torchopt.stop_gradient(net)
                torchopt.stop_gradient(inner)
                Fs.append(F.detach())
            return u.detach(), torch.stack(Fs)

        del net0
        return run, lambda out: (out[0].cpu().numpy(), out[1].cpu().numpy())

    @staticmethod
    def p3(data):
        import torchopt

        alpha, T, K = data["alpha"], data["T"], data["K"]
        Phi, Phi_o, yo, u0, w0 = (_t(data[k]) for k in ("Phi", "Phi_o", "yo", "u0", "w0"))

        def objective(w, u):
            return 0.5 * torch.sum((Phi @ w - u) ** 2)

        @torchopt.diff.implicit.custom_root(
            torch.func.grad(objective, argnums=0),
            argnums=1,
            solve=torchopt.linear_solve.solve_inv(ns=True, maxiter=K - 1, alpha=alpha),
        )
        def inner_solve(w, u):
            with torch.enable_grad():
                w = w.detach().requires_grad_(True)
                for _ in range(T):
                    (g,) = torch.autograd.grad(objective(w, u.detach()), w)
                    w = (w - alpha * g).detach().requires_grad_(True)
            return w.detach()

        def run():
            u = torch.nn.Parameter(u0.clone())
            opt = torch.optim.SGD([u], lr=data["outer_lr"])
            w_t = inner_solve(w0.clone(), u)
            F = 0.5 * torch.sum((Phi_o @ w_t - yo) ** 2)
            opt.zero_grad()
            F.backward()
            opt.step()
            return u.detach()

        return run, lambda u: u.cpu().numpy()


# ------------------------------------------------------------------------------------------------ higher
class Higher:
    NAME = "higher"

    @staticmethod
    def version():
        return f"{_version('higher')} (torch {torch.__version__})"

    @staticmethod
    def p1(task, data):
        import higher

        if task != "unroll":
            raise NotAvailable(
                "higher differentiates through unrolled loops only (no implicit differentiation)"
            )
        alpha = data["alpha"]
        u0, w0, X, y, Xv, yv = (_t(data[k]) for k in ("u0", "w0", "X", "y", "Xv", "yv"))
        net = _W(w0)
        opt = torch.optim.SGD(net.parameters(), lr=alpha)

        def run():
            u = u0.clone().requires_grad_(True)
            with higher.innerloop_ctx(net, opt, copy_initial_weights=True) as (fnet, diffopt):
                for _ in range(T_INNER):
                    diffopt.step(ridge_f(u, fnet.w, X, y))
                (g,) = torch.autograd.grad(ridge_F(fnet.w, Xv, yv), u)
            return g

        return run, lambda g: g.detach().cpu().numpy()

    @staticmethod
    def p2(data, steps=None):
        import higher

        steps = steps or data["steps"]
        Xo, yo, ys = _t(data["Xo"]), _t(data["yo"]).long(), _t(data["ys"]).long()

        def run():
            net = _mlp(data)
            u = torch.nn.Parameter(_t(data["u0"]).clone())
            inner = torch.optim.SGD(net.parameters(), lr=data["inner_lr"])
            outer = torch.optim.Adam([u], lr=data["outer_lr"])
            Fs = []
            for _ in range(steps):
                with higher.innerloop_ctx(net, inner, copy_initial_weights=True) as (fnet, diffopt):
                    diffopt.step(torch.nn.functional.cross_entropy(fnet(u), ys))
                    F = torch.nn.functional.cross_entropy(fnet(Xo), yo)
                    outer.zero_grad()
                    F.backward()
                    outer.step()
                    with torch.no_grad():  # warm start: carry the inner weights over
                        for p, q in zip(net.parameters(), fnet.parameters()):
                            p.copy_(q)
                Fs.append(F.detach())
            return u.detach(), torch.stack(Fs)

        return run, lambda out: (out[0].cpu().numpy(), out[1].cpu().numpy())

    @staticmethod
    def p3(data):
        raise NotAvailable("higher has no Neumann-series (implicit) hypergradient")


# ------------------------------------------------------------------------------------------------ Betty
class Betty:
    NAME = "betty"

    @staticmethod
    def version():
        return f"{_version('betty-ml')} (torch {torch.__version__})"

    @staticmethod
    def _engine(
        inner_loss,
        outer_loss,
        w_module,
        u_module,
        inner_lr,
        outer_lr,
        cfg,
        unroll,
        iters,
        inner_opt=None,
        outer_opt=None,
        capture=None,
    ):
        from betty.configs import Config, EngineConfig
        from betty.engine import Engine
        from betty.problems import ImplicitProblem

        _quiet_betty()

        class Inner(ImplicitProblem):
            def training_step(self, batch):
                return inner_loss(self.outer.module, self.module)

        class Outer(ImplicitProblem):
            def training_step(self, batch):
                return outer_loss(self.module, self.inner.module)

            def grad_callback(self):
                if capture is not None:
                    capture.append(self.module.u.grad.detach().clone())

        loader = [(torch.zeros(1, device=DEVICE),)]
        inner = Inner(
            name="inner",
            module=w_module,
            optimizer=inner_opt or torch.optim.SGD(w_module.parameters(), lr=inner_lr),
            train_data_loader=loader,
            config=Config(unroll_steps=unroll, **cfg),
        )
        outer = Outer(
            name="outer",
            module=u_module,
            optimizer=outer_opt or torch.optim.SGD(u_module.parameters(), lr=outer_lr),
            train_data_loader=loader,
            config=Config(),
        )
        engine = Engine(
            config=EngineConfig(train_iters=iters, valid_step=10**9, logger_type="none"),
            problems=[outer, inner],
            dependencies={"l2u": {inner: [outer]}, "u2l": {outer: [inner]}},
        )
        return engine

    @classmethod
    def p1(cls, task, data):
        if task == "unroll":
            raise NotAvailable(
                "Betty has no T-step unrolled hypergradient (its 'darts' type is a 1-step "
                "finite-difference approximation)"
            )
        if task == "normal_cg":
            raise NotAvailable("Betty has no normal-equation CG")
        alpha = data["alpha"]
        X, y, Xv, yv = (_t(data[k]) for k in ("X", "y", "Xv", "yv"))
        cfg = (
            dict(type="cg", cg_iterations=K_SOLVE, cg_alpha=1.0)
            if task == "cg"
            else dict(type="neumann", neumann_iterations=K_SOLVE - 1, neumann_alpha=alpha)
        )

        class U(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.u = torch.nn.Parameter(_t(data["u0"]).clone())

        def make(capture=None):
            return cls._engine(
                lambda um, wm: ridge_f(um.u, wm.w, X, y),
                lambda um, wm: ridge_F(wm.w, Xv, yv),
                _W(data["w0"]),
                U(),
                alpha,
                0.0,
                cfg,
                T_INNER,
                T_INNER,
                capture=capture,
            )

        def run():
            capture = []
            make(capture).run()
            return capture[0]

        return run, lambda g: g.cpu().numpy()

    @classmethod
    def p2(cls, data, steps=None):
        steps = steps or data["steps"]
        Xo, yo, ys = _t(data["Xo"]), _t(data["yo"]).long(), _t(data["ys"]).long()

        class U(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.u = torch.nn.Parameter(_t(data["u0"]).clone())

        def run():
            capture = []
            um = U()
            engine = cls._engine(
                lambda um_, wm: torch.nn.functional.cross_entropy(wm(um_.u), ys),
                lambda um_, wm: torch.nn.functional.cross_entropy(wm(Xo), yo),
                _mlp(data),
                um,
                data["inner_lr"],
                None,
                dict(type="darts", darts_alpha=0.01),
                1,
                steps,
                outer_opt=torch.optim.Adam(um.parameters(), lr=data["outer_lr"]),
                capture=capture,
            )
            engine.run()
            return um.u.detach(), torch.zeros(0)

        return run, lambda out: (out[0].cpu().numpy(), out[1].cpu().numpy())

    @classmethod
    def p3(cls, data):
        alpha, T, K = data["alpha"], data["T"], data["K"]
        Phi, Phi_o, yo = (_t(data[k]) for k in ("Phi", "Phi_o", "yo"))

        class U(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.u = torch.nn.Parameter(_t(data["u0"]).clone())

        def run():
            um = U()
            engine = cls._engine(
                lambda um_, wm: 0.5 * torch.sum((Phi @ wm.w - um_.u) ** 2),
                lambda um_, wm: 0.5 * torch.sum((Phi_o @ wm.w - yo) ** 2),
                _W(data["w0"]),
                um,
                alpha,
                data["outer_lr"],
                dict(type="neumann", neumann_iterations=K - 1, neumann_alpha=alpha),
                T,
                T,
            )
            engine.run()
            return um.u.detach()

        return run, lambda u: u.cpu().numpy()


def _mlp(data):
    layers = []
    for i, (W, b) in enumerate(data["w0"]):
        lin = torch.nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            lin.weight.copy_(_t(W).T)
            lin.bias.copy_(_t(b))
        layers.append(lin)
        if i < len(data["w0"]) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).to(DEVICE)
