"""The three algorithms of the exact solver, on one small problem object.

See :mod:`convtools.exact` for the problem they solve and the ``auto`` rule. Each
algorithm is a function ``(problem, alpha, w3, max_iter, tol, scale) -> (alpha, w3,
history)`` with α (A, k) and ω as ``w3`` (k, E, C), in the problem's working dtype; each
accepts only steps that do not increase the objective F, so its history is non-increasing.
Nothing here checks its arguments: :func:`convtools.exact.exact_neurons` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .closed_form import _solve_psd, _work_dtype

__all__ = [
    "ExactProblem",
    "alternating_least_squares",
    "balanced",
    "gauss_newton",
    "variable_projection",
]


@dataclass(frozen=True)
class ExactProblem:
    """The data of one exact problem, in the working precision (float64 where available).

    Attributes
    ----------
    s4 : torch.Tensor
        S_full as (A, E, A, E), symmetrized
    n3 : torch.Tensor
        N_full as (A, E, C)
    constant : float
        ‖v‖² (0 when unknown: F is then the objective minus ‖v‖²)
    penalty : float
        λ >= 0
    rtol : float
        relative eigenvalue cut-off of the PSD solves (the precision S_full was computed in)
    """

    s4: torch.Tensor
    n3: torch.Tensor
    constant: float = 0.0
    penalty: float = 0.0
    rtol: float = 0.0

    @classmethod
    def from_statistics(
        cls,
        s_full: torch.Tensor,
        n_full: torch.Tensor,
        a: int,
        v_sq_norm: float = 0.0,
        penalty: float = 0.0,
        rtol: float | None = None,
    ) -> ExactProblem:
        """Build the problem from S_full (A E, A E) and N_full (A E, C); no checks."""
        work = _work_dtype(s_full)
        e = s_full.shape[0] // a
        s4 = s_full.to(work).reshape(a, e, a, e)
        s4 = (s4 + s4.permute(2, 3, 0, 1)) / 2
        if rtol is None:  # the precision of the input, not the working one
            rtol = torch.finfo(s_full.dtype).eps
        return cls(
            s4, n_full.to(work).reshape(a, e, -1), float(v_sq_norm), float(penalty), float(rtol)
        )

    @property
    def sizes(self) -> tuple[int, int, int]:
        """(A, E, C)."""
        return self.n3.shape

    def solve(self, g: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """Solve ``(G + λ I) W = rhs`` for a PSD G (pseudo-inverse when λ = 0)."""
        if self.penalty:
            g = g + self.penalty * torch.eye(g.shape[0], dtype=g.dtype, device=g.device)
        return _solve_psd(g, rhs, self.rtol * g.shape[0])

    def theta(self, alpha: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
        """Θ (A E, C) of α (A, k) and ω (k, E, C)."""
        a, e, c = self.sizes
        return torch.einsum("ak, kec -> aec", alpha, w3).reshape(a * e, c)

    def value(self, alpha: torch.Tensor, w3: torch.Tensor) -> float:
        """F(α, ω) as a Python float."""
        a, e, c = self.sizes
        theta = self.theta(alpha, w3)
        s_theta = self.s4.reshape(a * e, a * e) @ theta
        fit = (theta * s_theta).sum() - 2 * (self.n3.reshape(a * e, c) * theta).sum()
        reg = self.penalty * (alpha.square().sum() + w3.square().sum()) if self.penalty else 0
        return self.constant + float(fit + reg)

    def omega_step(self, alpha: torch.Tensor) -> torch.Tensor:
        """The optimal ω (k, E, C) for a fixed α: one PSD solve of size k E."""
        a, e, c = self.sizes
        k = alpha.shape[1]
        g = torch.einsum("ak, aebf, bl -> kelf", alpha, self.s4, alpha)
        rhs = torch.einsum("ak, aec -> kec", alpha, self.n3)
        return self.solve(g.reshape(k * e, k * e), rhs.reshape(k * e, c)).reshape(k, e, c)

    def alpha_step(self, w3: torch.Tensor) -> torch.Tensor:
        """The optimal α (A, k) for a fixed ω: one PSD solve of size A k."""
        a, e, c = self.sizes
        k = w3.shape[0]
        gram = torch.einsum("kec, lfc -> kelf", w3, w3)
        g = torch.einsum("aebf, kelf -> akbl", self.s4, gram)
        rhs = torch.einsum("aec, kec -> ak", self.n3, w3)
        return self.solve(g.reshape(a * k, a * k), rhs.reshape(a * k)).reshape(a, k)

    def gauge(self, alpha: torch.Tensor, w3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Re-factor Θ without changing F: orthonormal α (λ = 0) or balanced factors (λ > 0).

        Balanced factors (both √σ of the SVD of Θ read as (A) × (C E)) have the smallest
        ‖α‖² + ‖ω‖² of all factorizations of Θ, so the penalty can only decrease.
        """
        if not self.penalty:
            q, r = torch.linalg.qr(alpha)
            return q, torch.einsum("kl, lec -> kec", r, w3)
        return balanced(alpha, w3)


def balanced(alpha: torch.Tensor, w3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced factors of the same Θ: α (A, k), ω (k, E, C), both carrying √σ."""
    a, k = alpha.shape
    _, e, c = w3.shape
    theta = alpha @ w3.reshape(k, e * c)
    u, sigma, vh = torch.linalg.svd(theta, full_matrices=False)
    root = sigma[:k].sqrt()
    return u[:, :k] * root, (root[:, None] * vh[:k]).reshape(k, e, c)


def _converged(history: list[float], tol: float, scale: float) -> bool:
    """True when the last step improved F by at most ``tol * scale``."""
    return len(history) >= 2 and history[-2] - history[-1] <= tol * scale


def alternating_least_squares(
    problem: ExactProblem,
    alpha: torch.Tensor,
    w3: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-10,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Alternate the exact ω-step and α-step (:meth:`ExactProblem.omega_step`, ``alpha_step``).

    Each half-step minimizes F exactly over one block, so F never increases.

    Parameters
    ----------
    problem : ExactProblem
    alpha : torch.Tensor
        start, shape (A, k), working dtype
    w3 : torch.Tensor
        start, shape (k, E, C)
    max_iter : int
        at most this many sweeps (one sweep = an ω-step then an α-step)
    tol, scale : float
        stop when a sweep improves F by at most ``tol * scale``

    Returns
    -------
    alpha, w3 : torch.Tensor
        the end point, shapes of the start
    history : list[float]
        F at the start and after each accepted sweep, non-increasing
    """
    history = [problem.value(alpha, w3)]
    for _ in range(max_iter):
        trial_alpha, trial_w3 = problem.gauge(alpha, w3)
        trial_w3 = problem.omega_step(trial_alpha)
        trial_alpha = problem.alpha_step(trial_w3)
        current = problem.value(trial_alpha, trial_w3)
        if not current <= history[-1]:  # refused only through rounding
            break
        alpha, w3 = trial_alpha, trial_w3
        history.append(current)
        if _converged(history, tol, scale):
            break
    return alpha, w3, history


def _gauss_newton_system(
    problem: ExactProblem, alpha: torch.Tensor, w3: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton matrix (Θ linearized, S_full's metric, + λ I) and descent direction.

    The unknowns are (α (A k), ω (k E C)), α first. Returns ``(H, g)`` with the step of the
    undamped method solving ``H step = g``.
    """
    a, e, c = problem.sizes
    k = alpha.shape[1]
    s4 = problem.s4
    theta = problem.theta(alpha, w3)
    residual = problem.n3 - (s4.reshape(a * e, a * e) @ theta).reshape(a, e, c)
    gram = torch.einsum("kec, lfc -> kelf", w3, w3)
    h_aa = torch.einsum("aebf, kelf -> akbl", s4, gram).reshape(a * k, a * k)
    s_alpha = torch.einsum("aebf, bl -> aelf", s4, alpha)
    g_w = torch.einsum("ak, aelf -> kelf", alpha, s_alpha).reshape(k * e, k * e)
    h_ww = torch.kron(g_w, torch.eye(c, dtype=s4.dtype, device=s4.device))
    h_aw = torch.einsum("aelf, kec -> aklfc", s_alpha, w3).reshape(a * k, k * e * c)
    hessian = torch.cat([torch.cat([h_aa, h_aw], 1), torch.cat([h_aw.T, h_ww], 1)], 0)
    grad = torch.cat(
        [
            torch.einsum("aec, kec -> ak", residual, w3).reshape(-1),
            torch.einsum("ak, aec -> kec", alpha, residual).reshape(-1),
        ]
    )
    if problem.penalty:
        hessian = hessian + problem.penalty * torch.eye(
            hessian.shape[0], dtype=s4.dtype, device=s4.device
        )
        grad = grad - problem.penalty * torch.cat([alpha.reshape(-1), w3.reshape(-1)])
    return hessian, grad


def gauss_newton(
    problem: ExactProblem,
    alpha: torch.Tensor,
    w3: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-10,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Damped Gauss-Newton (Levenberg-Marquardt) on (α, ω) jointly.

    Θ is bilinear in (α, ω): linearized around the current point, F becomes a quadratic
    whose minimizer, with damping ``μ · mean(diag H)`` added, is the trial step. A step is
    taken only if it decreases F (then μ shrinks), else μ grows; after 12 refusals one
    alternating sweep is tried instead. Arguments and returns as
    :func:`alternating_least_squares`.
    """
    a, _, _ = problem.sizes
    k = alpha.shape[1]
    history = [problem.value(alpha, w3)]
    damping = 1e-6
    for _ in range(max_iter):
        alpha, w3 = problem.gauge(alpha, w3)
        hessian, grad = _gauss_newton_system(problem, alpha, w3)
        level = float(hessian.diagonal().mean())
        eye = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
        accepted = None
        for _ in range(12):
            try:
                step = torch.linalg.solve(hessian + damping * level * eye, grad)
            except RuntimeError:  # singular even with damping: damp more
                damping *= 10.0
                continue
            trial = (alpha + step[: a * k].reshape(a, k), w3 + step[a * k :].reshape(w3.shape))
            value = problem.value(*trial)
            if value < history[-1]:
                damping = max(damping / 3.0, 1e-15)
                accepted = (*trial, value)
                break
            damping *= 4.0
        if accepted is None:  # fall back on one alternating sweep
            trial_w3 = problem.omega_step(alpha)
            trial_alpha = problem.alpha_step(trial_w3)
            accepted = (trial_alpha, trial_w3, problem.value(trial_alpha, trial_w3))
        if not accepted[2] <= history[-1]:
            break
        alpha, w3 = accepted[:2]
        history.append(accepted[2])
        if _converged(history, tol, scale):
            break
    return alpha, w3, history


def variable_projection(
    problem: ExactProblem,
    alpha: torch.Tensor,
    w3: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-10,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """L-BFGS on the reduced objective ``g(α) = min_ω F(α, ω)`` (Golub & Pereyra, 1973).

    For fixed α the optimal ω is one PSD solve of size k E (:meth:`ExactProblem.omega_step`);
    at that ω the gradient of g is ``2 (S_full Θ − N_full) ωᵀ + 2 λ α`` (the ω-derivative
    vanishes there). ``torch.optim.LBFGS`` with a strong-Wolfe line search minimizes g, one
    iteration per ``step`` so that the history records every accepted point; its line
    search only returns points no worse than the current one. ``w3`` of the start is not
    used (ω is always optimal for α). Arguments and returns as
    :func:`alternating_least_squares`.
    """
    a, e, c = problem.sizes
    k = alpha.shape[1]
    s_perm = problem.s4.permute(0, 1, 3, 2).reshape(a * e * e, a)  # rows (a, e, f)
    n2 = problem.n3.reshape(a * e, c)
    n_perm = problem.n3.permute(1, 2, 0).reshape(e * c, a)  # rows (e, c)

    def reduced(point: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """g(α), its gradient and the optimal ω (k, E, C); one product with S_full."""
        s_alpha = (s_perm @ point).reshape(a, e, e, k)  # [a, e, f, l]
        gram = (point.T @ s_alpha.reshape(a, -1)).reshape(k, e, e, k)
        gram = gram.permute(0, 1, 3, 2).reshape(k * e, k * e)
        rhs = (n_perm @ point).reshape(e, c, k).permute(2, 0, 1).reshape(k * e, c)
        omega = problem.solve(gram, rhs).reshape(k, e, c)
        theta = (point @ omega.reshape(k, e * c)).reshape(a * e, c)
        s_theta = s_alpha.reshape(a * e, e * k) @ omega.permute(1, 0, 2).reshape(e * k, c)
        val = float((theta * s_theta).sum() - 2 * (n2 * theta).sum())
        grad = 2 * (s_theta - n2).reshape(a, e * c) @ omega.reshape(k, e * c).T
        if problem.penalty:
            val += problem.penalty * float(point.square().sum() + omega.square().sum())
            grad = grad + 2 * problem.penalty * point
        return problem.constant + val, grad, omega

    start_value = problem.value(alpha, w3)
    value, _, omega = reduced(alpha)
    if not value <= start_value:  # the ω-solve alone; refused only through rounding
        return alpha, w3, [start_value]
    history = [start_value, value]
    param = alpha.clone().requires_grad_(False)
    # max_iter=1: one L-BFGS iteration per step() (its memory persists between calls);
    # max_eval must then be given, or the line search gets no evaluation at all.
    optimizer = torch.optim.LBFGS(
        [param],
        lr=1,
        max_iter=1,
        max_eval=25,
        history_size=30,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> float:
        val, grad, _ = reduced(param.detach())
        param.grad = grad
        return val

    small = 0
    for _ in range(max_iter):
        previous = param.detach().clone()
        optimizer.step(closure)
        value, _, omega_new = reduced(param.detach())
        if not value <= history[-1]:  # not expected from the line search; stay put
            param.data.copy_(previous)
            break
        omega = omega_new
        history.append(value)
        # relative to the objective when it is the squared residual (it tends to 0 on an
        # exactly representable target), else to the scale of the start
        level = min(scale, max(value, 0.0)) if problem.constant else scale
        small = small + 1 if history[-2] - value <= tol * max(level, 1e-300) else 0
        if small >= 2:
            break
    return param.detach(), omega, history
