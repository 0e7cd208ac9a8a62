"""Solvers: the optimal update of one convolution, TINY's closed form, the exact solver.

All solvers work from the sufficient statistics (S, N) alone. They compute in float64
(where the device supports it) and return results in the dtype of their inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_conv, check_image, check_matrix, check_positive_int
from .geometry import conv_output_size, unfold_input

__all__ = [
    "exact_neurons",
    "optimal_added_parameters",
    "optimal_delta",
    "project_goal",
    "solve_psd",
    "sqrt_inverse_psd",
]


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.device.type == "mps" else torch.float64


def _symmetric(name: str, s: object) -> torch.Tensor:
    s = check_matrix(name, s)
    if s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(s.shape)}")
    return s


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def sqrt_inverse_psd(s: torch.Tensor, threshold: float = 1e-6) -> torch.Tensor:
    """``S^{-1/2}`` of a symmetric positive semi-definite matrix, on its significant part.

    Eigenvalues ``<= threshold`` (absolute) are dropped, as in gromo's
    ``sqrt_inverse_matrix_semi_positive``.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d), symmetric (it is symmetrized)
    threshold : float
        eigenvalues at or below it count as zero

    Returns
    -------
    torch.Tensor
        shape (d, d), in ``s``'s dtype
    """
    s = _symmetric("s", s)
    threshold = _check_threshold("threshold", threshold)
    work = s.to(_work_dtype(s))
    eigenvalues, eigenvectors = torch.linalg.eigh((work + work.T) / 2)
    keep = eigenvalues > threshold
    vectors = eigenvectors[:, keep]
    return ((vectors * eigenvalues[keep].rsqrt()) @ vectors.T).to(s.dtype)


def solve_psd(s: torch.Tensor, rhs: torch.Tensor, rtol: float | None = None) -> torch.Tensor:
    """Minimum-norm solution of ``S W = rhs`` for a symmetric PSD, possibly singular, S.

    This is the pseudo-inverse solve ``W = S⁺ rhs`` restricted to eigenvalues above
    ``rtol * λ_max``. It minimizes ``⟨W, S W⟩ − 2⟨rhs, W⟩`` exactly whenever rhs lies in the
    range of S (always the case for S = XᵀX, rhs = XᵀY). Unlike ``torch.linalg.lstsq``'s
    default CPU driver (gelsy, which can return a wrong solution on such problems) it is
    right on rank-deficient S, on every device.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d)
    rhs : torch.Tensor
        shape (d,) or (d, t)
    rtol : float | None
        relative eigenvalue cut-off; default ``d * eps`` of ``s``'s dtype (the precision S
        was computed in: a float32 S carries float32 round-off in its null space)

    Returns
    -------
    torch.Tensor
        W, the shape of ``rhs``, in ``rhs``'s dtype
    """
    s = _symmetric("s", s)
    if not isinstance(rhs, torch.Tensor) or rhs.dim() not in (1, 2) or rhs.shape[0] != s.shape[0]:
        shape = tuple(rhs.shape) if isinstance(rhs, torch.Tensor) else type(rhs).__name__
        raise ValueError(f"rhs must have shape ({s.shape[0]},) or ({s.shape[0]}, t) to match "
                         f"s {tuple(s.shape)}, got {shape}")
    work_dtype = _work_dtype(s)
    if rtol is None:
        rtol = s.shape[0] * torch.finfo(s.dtype).eps
    rtol = _check_threshold("rtol", rtol)
    work = s.to(work_dtype)
    eigenvalues, eigenvectors = torch.linalg.eigh((work + work.T) / 2)
    top = eigenvalues.abs().max()
    keep = eigenvalues > rtol * top if top > 0 else torch.zeros_like(eigenvalues, dtype=bool)
    vectors = eigenvectors[:, keep]
    coords = vectors.T @ rhs.to(work_dtype)
    coords = coords / (eigenvalues[keep][:, None] if coords.dim() == 2 else eigenvalues[keep])
    return (vectors @ coords).to(rhs.dtype)


def optimal_added_parameters(
    s: torch.Tensor,
    n: torch.Tensor,
    numerical_threshold: float = 1e-6,
    statistical_threshold: float = 1e-3,
    max_neurons: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TINY's closed form: the best rank-k solution of ``min ⟨Θ, S Θ⟩ − 2⟨N, Θ⟩``.

    With ``P = S^{-1/2} N = U diag(σ) Vᵀ``, the new neurons are
    ``α = S^{-1/2} U diag(√σ)`` and ``ω = diag(√σ) Vᵀ`` (σ above the thresholds), so that
    ``α ω`` is the optimum under rank ≤ k (Verbockhaven et al., TMLR 2024). Same numbers as
    gromo 0.1.0's ``compute_optimal_added_parameters``, which returns ``(α.T, ω.T, σ)``.

    Parameters
    ----------
    s : torch.Tensor
        S, shape (d, d), symmetric PSD
    n : torch.Tensor
        N, shape (d, t)
    numerical_threshold : float
        eigenvalues of S at or below it are dropped in ``S^{-1/2}``
    statistical_threshold : float
        singular values of P below it are dropped (the largest is always kept)
    max_neurons : int | None
        keep at most this many (k >= 1); None keeps every significant one

    Returns
    -------
    alpha : torch.Tensor
        shape (d, k)
    omega : torch.Tensor
        shape (k, t)
    sigma : torch.Tensor
        singular values, shape (k,), non-increasing
    """
    s = _symmetric("s", s)
    n = check_matrix("n", n, (s.shape[0], None))
    numerical_threshold = _check_threshold("numerical_threshold", numerical_threshold)
    statistical_threshold = _check_threshold("statistical_threshold", statistical_threshold)
    if max_neurons is not None:
        check_positive_int("max_neurons", max_neurons)
    work_dtype = _work_dtype(s)
    s_inv_sqrt = sqrt_inverse_psd(s.to(work_dtype), numerical_threshold)
    p = s_inv_sqrt @ n.to(work_dtype)
    u, sigma, vh = torch.linalg.svd(p, full_matrices=False)
    keep = sigma >= min(statistical_threshold, float(sigma.max()))
    if max_neurons is not None:
        keep[max_neurons:] = False
    sigma, u, vh = sigma[keep], u[:, keep], vh[keep]
    root = sigma.sqrt()
    alpha = (s_inv_sqrt @ u) * root
    omega = root[:, None] * vh
    return alpha.to(n.dtype), omega.to(n.dtype), sigma.to(n.dtype)


def optimal_delta(inp: torch.Tensor, conv: torch.nn.Conv2d, v_goal: torch.Tensor,
                  rtol: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Best least-squares update of one convolution's weights: ``w* = S⁻¹ M``.

    Minimizes ``‖conv_{ΔW, Δb}(inp) − v_goal‖²`` with ``S = Σ_i B_i B_iᵀ`` and
    ``M = Σ_i B_i v_iᵀ``, ``B = unfold_input(inp, conv)`` (a pseudo-inverse solve when S is
    singular).

    Parameters
    ----------
    inp : torch.Tensor
        input of ``conv``, shape (n, C_in, H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution whose weights are updated
    v_goal : torch.Tensor
        desired change of its output, shape (n, C_out, H_out, W_out)
    rtol : float | None
        passed to :func:`solve_psd`

    Returns
    -------
    delta_weight : torch.Tensor
        shape of ``conv.weight``, (C_out, C_in, kh, kw)
    delta_bias : torch.Tensor | None
        shape (C_out,), None when ``conv`` has no bias
    """
    conv = check_conv("conv", conv)
    inp = check_image("inp", inp, conv.in_channels)
    expected = (inp.shape[0], conv.out_channels, *conv_output_size(tuple(inp.shape[-2:]), conv))
    v_goal = check_image("v_goal", v_goal)
    if tuple(v_goal.shape) != expected:
        raise ValueError(f"v_goal must have the shape of conv(inp), {expected}, "
                         f"got {tuple(v_goal.shape)}")
    with torch.no_grad():
        b = unfold_input(inp, conv)  # (n, A, L)
        s = torch.einsum("ial, ibl -> ab", b, b)
        m = torch.einsum("ial, icl -> ac", b, v_goal.flatten(2))
        w = solve_psd(s, m, rtol=rtol)  # (A, C_out)
    n_weight = conv.weight[0].numel()
    delta_weight = w[:n_weight].T.reshape(conv.weight.shape)
    delta_bias = w[n_weight] if conv.bias is not None else None
    return delta_weight, delta_bias


def project_goal(inp: torch.Tensor, conv: torch.nn.Conv2d, v_goal: torch.Tensor,
                 rtol: float | None = None) -> torch.Tensor:
    """``v_goal⊥ = v_goal − conv_{ΔW*}(inp)``: what the best update of conv leaves unexplained.

    TINY fits new neurons to this projection (notebook 06), so that they add expressivity
    instead of repeating a step on the existing weights.

    Parameters
    ----------
    inp : torch.Tensor
        input of ``conv`` (for conv2 of a pair: σ(conv1(x))), shape (n, C_in, H_in, W_in)
    conv : torch.nn.Conv2d
        the convolution
    v_goal : torch.Tensor
        shape (n, C_out, H_out, W_out)

    Returns
    -------
    torch.Tensor
        shape of ``v_goal``
    """
    delta_weight, delta_bias = optimal_delta(inp, conv, v_goal, rtol=rtol)
    with torch.no_grad():
        explained = F.conv2d(inp, delta_weight, delta_bias, stride=conv.stride,
                             padding=conv.padding, dilation=conv.dilation)
    return v_goal - explained


def _objective(theta: torch.Tensor, s_full: torch.Tensor, n_full: torch.Tensor) -> float:
    return float((theta * (s_full @ theta)).sum() - 2 * (n_full * theta).sum())


def _variable_projection(s4, n2, alpha, w3, constant, relative, history, scale, max_iter,
                         tol, solve):
    """L-BFGS on ``g(α) = min_ω f(α, ω)`` (see :func:`exact_neurons`); appends to history.

    s4: S_full as (A, E, A, E); n2: N_full (A E, C); alpha (A, k); w3: ω as (k, E, C);
    relative: stop relative to the current objective (it is the squared residual);
    solve(S, rhs): the PSD solve to use.
    Returns the final (alpha, w3); history[-1] is their objective.
    """
    a, e = s4.shape[:2]
    k, c = alpha.shape[1], n2.shape[1]
    s_perm = s4.permute(0, 1, 3, 2).reshape(a * e * e, a)  # rows (a, e, f), columns b
    n_perm = n2.reshape(a, e, c).permute(1, 2, 0).reshape(e * c, a)  # rows (e, c)

    def reduced(alpha):
        """g(α), its gradient and the optimal ω (as (k, E, C)) for this α."""
        s_alpha = (s_perm @ alpha).reshape(a, e, e, k)  # [a, e, f, l]
        gram = (alpha.T @ s_alpha.reshape(a, -1)).reshape(k, e, e, k)  # [k, e, f, l]
        gram = gram.permute(0, 1, 3, 2).reshape(k * e, k * e)
        rhs = (n_perm @ alpha).reshape(e, c, k).permute(2, 0, 1).reshape(k * e, c)
        w = solve(gram, rhs).reshape(k, e, c)
        theta = (alpha @ w.reshape(k, e * c)).reshape(a * e, c)
        # S Θ = S (α ⊗ I) ω from S α: no second pass over S
        s_theta = s_alpha.reshape(a * e, e * k) @ w.permute(1, 0, 2).reshape(e * k, c)
        val = constant + float((theta * s_theta).sum() - 2 * (n2 * theta).sum())
        grad = 2 * (s_theta - n2).reshape(a, e * c) @ w.reshape(k, e * c).T
        return val, grad, w

    current, grad, w_new = reduced(alpha)
    if not current <= history[-1]:  # the ω-solve alone; refused only through rounding
        return alpha, w3
    w3 = w_new
    history.append(current)
    memory: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    small = 0
    for _ in range(max_iter):
        # two-loop recursion: direction = -H grad, H the L-BFGS inverse-Hessian estimate
        q = grad.clone()
        coefs = []
        for s_k, y_k, rho in reversed(memory):
            coef = rho * float((s_k * q).sum())
            q -= coef * y_k
            coefs.append(coef)
        if memory:
            s_k, y_k, _ = memory[-1]
            q *= float((s_k * y_k).sum() / (y_k * y_k).sum())
        else:  # steepest descent with a step of 1 % of α
            q *= 1e-2 * float(alpha.norm()) / max(float(grad.norm()), 1e-300)
        for (s_k, y_k, rho), coef in zip(memory, reversed(coefs)):
            q += (coef - rho * float((y_k * q).sum())) * s_k
        direction = -q
        slope = float((grad * direction).sum())
        if not slope < 0:
            if not memory:
                break
            memory.clear()
            continue
        step, accepted = 1.0, None
        for _ in range(40):
            trial = alpha + step * direction
            t_val, t_grad, t_w = reduced(trial)
            if t_val <= current + 1e-4 * step * slope and t_val <= current:
                accepted = (trial, t_val, t_grad, t_w)
                break
            step *= 0.5
        if accepted is None:
            if not memory:
                break
            memory.clear()  # retry once from steepest descent
            continue
        trial, t_val, t_grad, t_w = accepted
        s_k, y_k = trial - alpha, t_grad - grad
        sy = float((s_k * y_k).sum())
        if sy > 1e-12 * float(s_k.norm()) * float(y_k.norm()):
            memory.append((s_k, y_k, 1.0 / sy))
            if len(memory) > 30:
                memory.pop(0)
        improvement = current - t_val
        alpha, current, grad, w3 = trial, t_val, t_grad, t_w
        history.append(current)
        if len(history) % 50 == 0:  # g depends on the span of α only: keep α conditioned
            q_alpha, r_alpha = torch.linalg.qr(alpha)
            if torch.linalg.cond(r_alpha) > 1e4:
                q_val, q_grad, q_w = reduced(q_alpha)
                if q_val <= current:
                    alpha, current, grad, w3 = q_alpha, q_val, q_grad, q_w
                    history[-1] = current
                    memory.clear()
        # relative to the objective when it is the squared residual (it tends to 0 on an
        # exactly representable target), else to the scale of the start
        level = min(scale, max(current, 0.0)) if relative else scale
        small = small + 1 if improvement <= tol * max(level, 1e-300) else 0
        if small >= 2:
            break
    return alpha, w3


def exact_neurons(
    s_full: torch.Tensor,
    n_full: torch.Tensor,
    alpha0: torch.Tensor,
    omega0: torch.Tensor,
    max_iter: int = 500,
    tol: float = 1e-10,
    v_sq_norm: float | torch.Tensor | None = None,
    rtol: float | None = None,
    newton_size: int = 600,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """The exact k-channel optimum of the true objective, from S_full and N_full alone.

    Minimizes ``f(α, ω) = ‖v‖² − 2⟨N_full, Θ⟩ + ⟨Θ, S_full Θ⟩`` with
    ``Θ[a, e, c] = Σ_k α[a, k] ω[k, c E + e]`` (notebook 04). With α fixed, f is a quadratic
    in ω; with ω fixed, a quadratic in α: each half-step is one PSD solve
    (:func:`solve_psd`, robust to the singular S_full, notebook 04) built from S_full and
    N_full alone. Each half-step is an exact block minimization, so f never increases.
    Alternating steps can crawl along narrow valleys; while the problem is small enough
    (``newton_size``) each iteration is instead a damped Gauss-Newton step on (α, ω)
    jointly (Θ linearized, the quadratic objective minimized exactly), taken only if it
    decreases f, with an alternating sweep as fallback. Larger problems use variable
    projection instead: ω is eliminated (its optimum for fixed α is one PSD solve of size
    k E) and the reduced objective ``g(α) = min_ω f(α, ω)``, whose gradient is
    ``2 (S_full Θ − N_full) ωᵀ`` at the optimal ω, is minimized by L-BFGS with a
    backtracking line search: one product with S_full per step, and none of the slow
    zig-zag of alternating sweeps along the valleys of f. Any step that does not decrease
    f is refused and the iteration stops: the result is never worse than the start.

    Parameters
    ----------
    s_full : torch.Tensor
        S_full, shape (A E, A E)
    n_full : torch.Tensor
        N_full, shape (A E, C)
    alpha0 : torch.Tensor
        starting α, shape (A, k), e.g. TINY's
    omega0 : torch.Tensor
        starting ω, shape (k, C E), column ``c E + e`` (TINY's layout)
    max_iter : int
        at most this many sweeps (one sweep = an ω-step then an α-step)
    tol : float
        stop when a sweep improves f by less than ``tol * scale``, where scale is
        ``v_sq_norm`` when given, else ``|f(start)|``
    v_sq_norm : float | torch.Tensor | None
        ‖v‖²; when given, the history holds the objective itself (the squared residual),
        otherwise the objective minus ‖v‖²
    rtol : float | None
        relative eigenvalue cut-off of the solves
    newton_size : int
        use damped Gauss-Newton iterations while the number of unknowns
        ``A k + k E C`` is at most this (their linear system is that size); larger
        problems use variable projection with L-BFGS

    Returns
    -------
    alpha : torch.Tensor
        shape (A, k)
    omega : torch.Tensor
        shape (k, C E); ``α ω`` is balanced (both factors carry √σ of the SVD of Θ read
        as an (A) × (C E) matrix)
    history : list[float]
        objective at the start and after each accepted sweep, non-increasing
    """
    s_full = _symmetric("s_full", s_full)
    alpha0 = check_matrix("alpha0", alpha0)
    a, k = alpha0.shape
    if s_full.shape[0] % a:
        raise ValueError(f"s_full has size {s_full.shape[0]}, not a multiple of A = {a} "
                         f"(alpha0 has shape {tuple(alpha0.shape)})")
    e = s_full.shape[0] // a
    n_full = check_matrix("n_full", n_full, (a * e, None))
    c = n_full.shape[1]
    omega0 = check_matrix("omega0", omega0, (k, c * e))
    check_positive_int("max_iter", max_iter)
    tol = _check_threshold("tol", tol)

    work_dtype = _work_dtype(s_full)
    input_eps = torch.finfo(s_full.dtype).eps

    def solve(g: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        # the cut-off follows the precision S_full was computed in, not the working one
        return solve_psd(g, rhs, rtol=g.shape[0] * input_eps if rtol is None else rtol)

    s4 = s_full.to(work_dtype).reshape(a, e, a, e)
    s4 = (s4 + s4.permute(2, 3, 0, 1)) / 2
    s2 = s4.reshape(a * e, a * e)
    n2 = n_full.to(work_dtype)
    n3 = n2.reshape(a, e, c)
    alpha = alpha0.to(work_dtype)
    w3 = omega0.to(work_dtype).reshape(k, c, e).permute(0, 2, 1)  # ω as (k, E, C)
    constant = 0.0 if v_sq_norm is None else float(v_sq_norm)

    def value(alpha: torch.Tensor, w3: torch.Tensor) -> float:
        theta = torch.einsum("ak, kec -> aec", alpha, w3).reshape(a * e, c)
        return constant + _objective(theta, s2, n2)

    def als_sweep(alpha: torch.Tensor, w3: torch.Tensor):
        # Gauge: orthonormal α keeps the ω-step well conditioned.
        q, r = torch.linalg.qr(alpha)
        alpha, w3 = q, torch.einsum("kl, lec -> kec", r, w3)
        # ω-step: Θ = (α ⊗ I_E) W, a quadratic in W (k E, C).
        g = torch.einsum("ak, aebf, bl -> kelf", alpha, s4, alpha)
        rhs = torch.einsum("ak, aec -> kec", alpha, n3)
        w3 = solve(g.reshape(k * e, k * e), rhs.reshape(k * e, c))
        w3 = w3.reshape(k, e, c)
        # α-step: a quadratic in α (A, k) with the Gram of ω folded into S.
        gram = torch.einsum("kec, lfc -> kelf", w3, w3)
        g = torch.einsum("aebf, kelf -> akbl", s4, gram)
        rhs = torch.einsum("aec, kec -> ak", n3, w3)
        alpha = solve(g.reshape(a * k, a * k), rhs.reshape(a * k))
        return alpha.reshape(a, k), w3

    def damped_gauss_newton(alpha: torch.Tensor, w3: torch.Tensor, current: float):
        # Θ is bilinear in (α, ω): linearize it and minimize the quadratic objective
        # exactly (Levenberg-Marquardt damping; a step is taken only if f decreases).
        nonlocal damping
        q, r = torch.linalg.qr(alpha)
        alpha, w3 = q, torch.einsum("kl, lec -> kec", r, w3)
        theta = torch.einsum("ak, kec -> aec", alpha, w3)
        residual = n3 - (s2 @ theta.reshape(a * e, c)).reshape(a, e, c)
        gram = torch.einsum("kec, lfc -> kelf", w3, w3)
        h_aa = torch.einsum("aebf, kelf -> akbl", s4, gram).reshape(a * k, a * k)
        s_alpha = torch.einsum("aebf, bl -> aelf", s4, alpha)
        g_w = torch.einsum("ak, aelf -> kelf", alpha, s_alpha).reshape(k * e, k * e)
        h_ww = torch.kron(g_w, torch.eye(c, dtype=work_dtype, device=s4.device))
        h_aw = torch.einsum("aelf, kec -> aklfc", s_alpha, w3).reshape(a * k, k * e * c)
        hessian = torch.cat([torch.cat([h_aa, h_aw], 1), torch.cat([h_aw.T, h_ww], 1)], 0)
        grad = torch.cat([torch.einsum("aec, kec -> ak", residual, w3).reshape(-1),
                          torch.einsum("ak, aec -> kec", alpha, residual).reshape(-1)])
        level = float(hessian.diagonal().mean())
        eye = torch.eye(hessian.shape[0], dtype=work_dtype, device=s4.device)
        for _ in range(12):
            try:
                step = torch.linalg.solve(hessian + damping * level * eye, grad)
            except RuntimeError:
                damping *= 10.0
                continue
            trial_alpha = alpha + step[: a * k].reshape(a, k)
            trial_w3 = w3 + step[a * k:].reshape(k, e, c)
            trial = value(trial_alpha, trial_w3)
            if trial < current:
                damping = max(damping / 3.0, 1e-15)
                return trial_alpha, trial_w3, trial
            damping *= 4.0
        return None

    history = [value(alpha, w3)]
    scale = abs(constant) if v_sq_norm is not None else abs(history[0])
    scale = scale if scale > 0 else 1.0
    use_newton = a * k + k * e * c <= newton_size
    if not use_newton:
        alpha, w3 = _variable_projection(s4, n2, alpha, w3, constant, v_sq_norm is not None,
                                         history, scale, max_iter, tol, solve)
    damping = 1e-6
    for _ in range(max_iter if use_newton else 0):
        step = damped_gauss_newton(alpha, w3, history[-1])
        if step is None:
            alpha_new, w3_new = als_sweep(alpha, w3)
            current = value(alpha_new, w3_new)
        else:
            alpha_new, w3_new, current = step
        if not current <= history[-1]:
            break
        alpha, w3 = alpha_new, w3_new
        improvement = history[-1] - current
        history.append(current)
        if improvement <= tol * scale:
            break

    # Balanced factors of Θ read as (A) × (C E).
    theta_tiny = torch.einsum("ak, kec -> ace", alpha, w3).reshape(a, c * e)
    u, sigma, vh = torch.linalg.svd(theta_tiny, full_matrices=False)
    root = sigma[:k].sqrt()
    alpha_out = u[:, :k] * root
    omega_out = root[:, None] * vh[:k]
    return alpha_out.to(n_full.dtype), omega_out.to(n_full.dtype), history
