"""Constrained quadratic minimisation for electrode charges: direct (pre-inverted matrix) and projected PCG.

The electrode charges q (n,) minimise U(q) = ½ qᵀA q − qᵀb subject to linear constraints C q = d
(overall neutrality, fixed-charge electrodes). The stationarity conditions are

    A q = b + Cᵀλ,   C q = d   ⇒   λ = S⁻¹ (d − C A⁻¹ b),  S = C A⁻¹ Cᵀ,  q = A⁻¹ (b + Cᵀλ)

(Siepmann & Sprik, JCP 102, 511 (1995); Reed et al., JCP 126, 084704 (2007); Scalfi et al., JCP 153, 174704
(2020) for the neutrality multiplier). λ shifts the potential of the constrained groups (units V).

* :class:`MatrixSolver` (frozen electrodes): A⁻¹, A⁻¹Cᵀ and S⁻¹ are computed once (O(n³)); each solve is O(n²).
* :func:`projected_cg` (mobile electrodes): conjugate gradients restricted to {C q = d} with a diagonal
  (Jacobi) preconditioner and the preconditioner-weighted projection
  P = M⁻¹ − M⁻¹Cᵀ(C M⁻¹ Cᵀ)⁻¹ C M⁻¹ (Gould, Hribar & Nocedal, SIAM J. Sci. Comput. 23, 1376 (2001));
  A enters only through matrix–vector products, so it can be applied matrix-free (an Ewald potential).
All tensors float64 (the constraint is then kept to ~1e-14 e).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class MatrixSolver:
    """Direct solver with everything that depends only on A and C precomputed.

    Args:
        matrix: (n, n) symmetric positive-definite A, eV/e².
        constraints: (m, n) constraint matrix C (rows linearly independent), m ≥ 0.
    """

    def __init__(self, matrix: torch.Tensor, constraints: torch.Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square, got {tuple(matrix.shape)}")
        if constraints.ndim != 2 or constraints.shape[1] != matrix.shape[0]:
            raise ValueError(f"constraints must have shape (m, {matrix.shape[0]}), got {tuple(constraints.shape)}")
        factor, info = torch.linalg.cholesky_ex(matrix)
        if int(info) != 0:
            raise ValueError("electrode Coulomb matrix is not positive definite (overlapping electrode atoms?)")
        self.inverse = torch.cholesky_inverse(factor)
        self.constraints = constraints
        self.inverse_ct = self.inverse @ constraints.T
        schur = constraints @ self.inverse_ct
        self.schur_inverse = torch.linalg.inv(schur) if constraints.shape[0] else schur

    def solve(self, rhs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Charges q (n,) and multipliers λ (m,) for right-hand side b (n,) and constraint values d (m,)."""
        free = self.inverse @ rhs
        multipliers = self.schur_inverse @ (targets - self.constraints @ free)
        return free + self.inverse_ct @ multipliers, multipliers


def feasible_start(guess: torch.Tensor, constraints: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The point of {C q = d} closest to ``guess`` (Euclidean projection)."""
    if constraints.shape[0] == 0:
        return guess
    gram = constraints @ constraints.T
    return guess + constraints.T @ torch.linalg.solve(gram, targets - constraints @ guess)


def projected_cg(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    constraints: torch.Tensor,
    targets: torch.Tensor,
    diagonal: torch.Tensor,
    guess: torch.Tensor | None = None,
    tolerance: float = 1e-9,
    max_iterations: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise ½ qᵀAq − qᵀb on {C q = d} by preconditioned projected conjugate gradients.

    Args:
        matvec: v ↦ A v for (n,) vectors (A symmetric positive definite on the constraint null space).
        rhs: b (n,).  constraints: C (m, n).  targets: d (m,).
        diagonal: (n,) positive preconditioner M (≈ diag A).
        guess: starting charges (e.g. the previous MD step's); projected onto the constraints first.
        tolerance: stop when max |Aq − b − Cᵀλ| < tolerance (λ the least-squares multipliers), V.
        max_iterations: raise ``ValueError`` if not converged by then.

    Returns:
        (q, λ, iterations).
    """
    m_inv = 1.0 / diagonal
    weighted = constraints * m_inv  # C M⁻¹
    small = torch.linalg.inv(weighted @ constraints.T) if constraints.shape[0] else None
    gram_inv = torch.linalg.inv(constraints @ constraints.T) if constraints.shape[0] else None

    def precondition(r: torch.Tensor) -> torch.Tensor:
        z = m_inv * r
        if small is None:
            return z
        return z - weighted.T @ (small @ (constraints @ z))

    def split(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """r = r' + Cᵀμ with C M⁻¹ r' = 0 (residual update of Gould et al.; keeps roundoff out of rᵀg)."""
        if small is None:
            return r, r.new_zeros(0)
        mu = small @ (weighted @ r)
        return r - constraints.T @ mu, mu

    q = feasible_start(rhs.new_zeros(rhs.shape) if guess is None else guess.clone(), constraints, targets)
    r, lam = split(matvec(q) - rhs)  # gradient of U = r + Cᵀλ
    g = precondition(r)
    p = -g
    rg = torch.dot(r, g)
    for iteration in range(max_iterations + 1):
        correction = gram_inv @ (constraints @ r) if gram_inv is not None else r.new_zeros(0)
        residual = r - constraints.T @ correction if gram_inv is not None else r
        if float(residual.abs().max()) < tolerance:
            return q, lam + correction, iteration
        if iteration == max_iterations:
            break
        ap = matvec(p)
        alpha = rg / torch.dot(p, ap)
        q = q + alpha * p
        r, mu = split(r + alpha * ap)
        lam = lam + mu
        g = precondition(r)
        rg_new = torch.dot(r, g)
        p = -g + (rg_new / rg) * p
        rg = rg_new
    raise ValueError(
        f"electrode CG did not converge in {max_iterations} iterations "
        f"(residual {float(residual.abs().max()):.3e} V > {tolerance:.1e} V)"
    )
