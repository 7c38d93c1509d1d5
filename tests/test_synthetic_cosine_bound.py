"""The mean pairwise cosine of the task gradients on the synthetic landscape (paper §4.1, Fig. 3) is bounded.

Every task gradient of `SyntheticLandscape` is radial: g_i(φ) = c_i(φ)·u_i with c_i > 0 and
u_i = (φ - x_i)/||φ - x_i||, so a cosine only depends on the unit vectors u_i. Let θ_1, θ_2, θ_3 be the angles
between consecutive directions from φ to the three optima (θ_1 + θ_2 + θ_3 = 2π); then
Σ_{i<j} cos(g_i, g_j) = Σ cos θ_k = -1 - 4·Π cos(θ_k/2). In the closed triangle of the optima every θ_k ≤ π,
so the mean cosine is -1/3 - (4/3)·Π cos(θ_k/2) ∈ [-1/2, -1/3]: -1/3 exactly on the edges (one θ_k = π,
two gradients opposite), < -1/3 strictly inside, -1/2 at the Fermat point (all θ_k = 2π/3). Outside the
triangle one θ_k > π and the mean cosine is > -1/3. The three MTL minima of Σ L_i are the optima
themselves (cone points: the other two tasks pull with |g_j + g_k| ≈ 7.3 < 40 = scale·rate, the slope of
the cone), where g_i is undefined and the limit of the mean cosine depends on the direction of approach.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.func import grad, vmap

from lightning_modules.models.synthetic import PAPER_OPTIMA, SyntheticLandscape

TASKS = ("t1", "t2", "t3")
X = torch.tensor([PAPER_OPTIMA[t] for t in TASKS], dtype=torch.float64)
THIRD = 1.0 / 3.0


@pytest.fixture(scope="module")
def model() -> SyntheticLandscape:
    return SyntheticLandscape()


def task_gradients(model: SyntheticLandscape, points: torch.Tensor) -> torch.Tensor:
    """(n, 2) points -> (n, 3, 2) autograd gradients of the model's own task losses."""
    per_task = [vmap(grad(lambda p, task=task: model.task_loss_at(task, p)))(points) for task in TASKS]
    return torch.stack(per_task, dim=1)


def mean_cosine(model: SyntheticLandscape, points: torch.Tensor) -> torch.Tensor:
    return mean_cosine_of(task_gradients(model, points))


def mean_cosine_of(gradients: torch.Tensor) -> torch.Tensor:
    units = torch.nn.functional.normalize(gradients, dim=-1)
    pairs = [(units[:, i] * units[:, j]).sum(-1) for i, j in itertools.combinations(range(3), 2)]
    return sum(pairs) / 3


@pytest.fixture(scope="module")
def grid(model: SyntheticLandscape) -> dict[str, torch.Tensor]:
    """401 x 401 points, step 0.05, over [-5, 15]²; k/20 is exact, so the lines x = 0, y = 0 are on the grid."""
    axis = torch.arange(-100, 301, dtype=torch.float64) / 20
    points = torch.cartesian_prod(axis, axis)
    away = torch.cdist(points, X).min(dim=1).values > 1e-9  # g_i is undefined at x_i
    points = points[away]
    x, y = points[:, 0], points[:, 1]
    tol = 1e-12
    closed = (x >= -tol) & (y >= -tol) & (x + y <= 10 + tol)
    interior = (x > tol) & (y > tol) & (x + y < 10 - tol)
    gradients = task_gradients(model, points)
    return {"points": points, "g": gradients, "cos": mean_cosine_of(gradients), "closed": closed, "interior": interior}


def test_gradients_are_radial_away_from_each_optimum(grid: dict[str, torch.Tensor]) -> None:
    points, g = grid["points"], grid["g"]
    for i in range(3):
        diff = points - X[i]
        cross = g[:, i, 0] * diff[:, 1] - g[:, i, 1] * diff[:, 0]
        assert cross.abs().max() < 1e-9 * g[:, i].norm(dim=-1).max()
        assert ((g[:, i] * diff).sum(-1) > 0).all()


def test_mean_cosine_is_at_most_minus_one_third_on_the_closed_triangle(grid: dict[str, torch.Tensor]) -> None:
    cos, closed, interior = grid["cos"], grid["closed"], grid["interior"]
    edges = closed & ~interior
    assert edges.sum() > 500 and interior.sum() > 19_000
    assert cos[closed].max() <= -THIRD + 1e-9
    assert cos[closed].min() >= -0.5 - 1e-9
    # equality on the edges (vertices excluded): two gradients opposite, the third's cosines cancel
    assert (cos[edges] + THIRD).abs().max() < 1e-9
    # strict inside; the grid's closest interior points to an edge are 0.05 away (measured -0.33400)
    assert cos[interior].max() < -THIRD - 5e-4
    # the minimum -1/2 at the Fermat point (5 - 5/√3)(1, 1) ≈ (2.113, 2.113); nearest grid value ≈ -0.49998
    fermat = grid["points"][cos.argmin()]
    assert torch.allclose(fermat, torch.full((2,), 5 - 5 / math.sqrt(3), dtype=torch.float64), atol=0.05)
    assert cos.min() < -0.5 + 1e-4


def test_mean_cosine_matches_the_half_angle_identity(grid: dict[str, torch.Tensor]) -> None:
    """mean cosine = -1/3 - (4/3)·Π cos(θ_k/2), θ_k the gaps between the directions from φ to the optima."""
    points, cos = grid["points"], grid["cos"]
    to_optima = X[None] - points[:, None]
    angles = torch.atan2(to_optima[..., 1], to_optima[..., 0]).sort(dim=1).values
    gaps = torch.stack(
        [angles[:, 1] - angles[:, 0], angles[:, 2] - angles[:, 1], 2 * math.pi - angles[:, 2] + angles[:, 0]], 1
    )
    predicted = -THIRD - 4 / 3 * torch.cos(gaps / 2).prod(dim=1)
    assert (predicted - cos).abs().max() < 1e-9


def test_mean_cosine_outside_the_triangle_is_above_minus_one_third(grid: dict[str, torch.Tensor]) -> None:
    cos, closed = grid["cos"], grid["closed"]
    outside = cos[~closed]
    assert outside.min() > -THIRD  # strict; the grid's closest points give -0.33267
    assert outside.max() < 1.0  # the cosines tend to 1 only far away from all three optima


def directional_range(i: int) -> tuple[float, float, float]:
    """At x_i the limit of the mean cosine from direction d is (cos(u_j, u_k) + d·(u_j + u_k))/3."""
    others = [j for j in range(3) if j != i]
    units = [(X[i] - X[j]) / (X[i] - X[j]).norm() for j in others]
    c, s = float(units[0] @ units[1]), float((units[0] + units[1]).norm())
    return c, (c - s) / 3, (c + s) / 3


@pytest.mark.parametrize("i", range(3))
def test_the_mtl_minima_are_the_optima_and_the_cosine_there_depends_on_the_direction(
    model: SyntheticLandscape, i: int
) -> None:
    def total(p: np.ndarray) -> float:
        point = torch.tensor(p, dtype=torch.float64)
        return float(sum(model.task_loss_at(task, point) for task in TASKS))

    for start in [(0.3, 0.3), (-0.4, 0.2), (0.2, -0.4)]:
        found = minimize(
            total, X[i].numpy() + np.array(start), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12}
        )
        assert np.linalg.norm(found.x - X[i].numpy()) < 1e-6
    # a cone point: the pull of the two other tasks is weaker than the cone's slope scale·rate = 40
    pull = task_gradients(model, X[i][None])[0, [j for j in range(3) if j != i]].sum(0).norm()
    assert pull < 0.2 * model.scale * model.rate

    c, lowest, highest = directional_range(i)
    expected = {0: (-0.3802, 0.8516), 1: (-0.4714, 0.4714), 2: (-0.3802, 0.8516)}[i]
    assert (lowest, highest) == pytest.approx(expected, abs=1e-4)
    angles = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)[:-1]
    directions = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    limits = mean_cosine(model, X[i] + 1e-7 * directions)
    # at distance 1e-7 the two other gradients' directions differ from those at x_i by ~1e-8
    assert limits.min() >= lowest - 1e-6 and limits.max() <= highest + 1e-6
    assert limits.min() == pytest.approx(lowest, abs=1e-4) and limits.max() == pytest.approx(highest, abs=1e-4)
    # averaged over the circle of directions the limit is cos(u_j, u_k)/3: 0.2357 at t1 and t3, 0 at t2
    assert float(limits.mean()) == pytest.approx(c / 3, abs=1e-6)
    # gradient flow of Σ L_i reaches x_i from d = -(g_j + g_k)/|g_j + g_k|, inside the triangle: -0.3723 at
    # t1 and t3, -0.4714 at t2, below -1/3 like every point of the triangle
    pull_vec = task_gradients(model, X[i][None])[0, [j for j in range(3) if j != i]].sum(0)
    flow = mean_cosine(model, X[i][None] - 1e-7 * pull_vec / pull_vec.norm())
    assert float(flow) == pytest.approx({0: -0.3723, 1: -0.4714, 2: -0.3723}[i], abs=1e-4)
