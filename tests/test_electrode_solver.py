"""Constrained electrode-charge solvers against an independent dense KKT solve (numpy)."""

import numpy as np
import pytest
import torch

from lesmd.electrode.solver import MatrixSolver, feasible_start, projected_cg


def _problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n))
    a = x @ x.T / n + np.diag(rng.uniform(5.0, 20.0, n))  # SPD, diagonally dominant like A + self terms
    b = rng.normal(size=n)
    c = np.stack([np.ones(n), (np.arange(n) < n // 3).astype(float)])  # neutrality + one fixed-charge group
    d = np.array([-0.3, 0.7])
    return a, b, c, d


def _kkt(a, b, c, d):
    n, m = len(b), len(d)
    kkt = np.block([[a, -c.T], [c, np.zeros((m, m))]])
    sol = np.linalg.solve(kkt, np.concatenate([b, d]))
    return sol[:n], sol[n:]


def test_matrix_solver_matches_dense_kkt_system():
    a, b, c, d = _problem()
    q_ref, lam_ref = _kkt(a, b, c, d)
    q, lam = MatrixSolver(torch.tensor(a), torch.tensor(c)).solve(torch.tensor(b), torch.tensor(d))
    assert np.allclose(q.numpy(), q_ref, atol=1e-12)
    assert np.allclose(lam.numpy(), lam_ref, atol=1e-12)
    assert np.allclose(c @ q.numpy(), d, atol=1e-13)


def test_projected_cg_matches_dense_kkt_system():
    a, b, c, d = _problem(seed=1)
    q_ref, lam_ref = _kkt(a, b, c, d)
    at = torch.tensor(a)
    q, lam, iterations = projected_cg(lambda v: at @ v, torch.tensor(b), torch.tensor(c), torch.tensor(d),
                                      torch.tensor(np.diag(a).copy()), tolerance=1e-12)
    assert 0 < iterations < 40
    assert np.allclose(q.numpy(), q_ref, atol=1e-11)
    assert np.allclose(lam.numpy(), lam_ref, atol=1e-10)
    assert np.allclose(c @ q.numpy(), d, atol=1e-12)


def test_projected_cg_warm_start_from_solution_needs_no_iteration():
    a, b, c, d = _problem(seed=2)
    q_ref, _ = _kkt(a, b, c, d)
    at = torch.tensor(a)
    _, _, iterations = projected_cg(lambda v: at @ v, torch.tensor(b), torch.tensor(c), torch.tensor(d),
                                    torch.tensor(np.diag(a).copy()), guess=torch.tensor(q_ref), tolerance=1e-9)
    assert iterations == 0


def test_feasible_start_satisfies_constraints():
    _, b, c, d = _problem(seed=3)
    q = feasible_start(torch.tensor(b), torch.tensor(c), torch.tensor(d))
    assert np.allclose(c @ q.numpy(), d, atol=1e-13)


def test_projected_cg_reports_non_convergence():
    a, b, c, d = _problem(seed=4)
    at = torch.tensor(a)
    with pytest.raises(ValueError, match="did not converge"):
        projected_cg(lambda v: at @ v, torch.tensor(b), torch.tensor(c), torch.tensor(d),
                     torch.tensor(np.diag(a).copy()), tolerance=1e-14, max_iterations=2)


def test_matrix_solver_rejects_indefinite_matrix():
    with pytest.raises(ValueError, match="not positive definite"):
        MatrixSolver(torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64))
