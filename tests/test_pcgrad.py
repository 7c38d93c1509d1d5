"""PCGrad: torchjd's aggregator is Yu et al.'s Algorithm 1 (hand-worked 2-D cases, an independent
implementation), and the shared step (G once, surgery on the shared parameters, heads plain, one step)."""

from __future__ import annotations

import math

import pytest
import torch

from datamodules.schedule import IIDSchedule
from lightning_modules.algorithms.mtl import MTL
from lightning_modules.algorithms.pcgrad import PCGrad
from lightning_modules.models.synthetic import SyntheticLandscape
from tests.trainer_fixtures import SharedWithHeads, fit_synthetic


def paper_pcgrad(jacobian: torch.Tensor, seed: int) -> torch.Tensor:
    """Algorithm 1 of Yu et al. 2020 written out on vectors; one torch.randperm(m) per task i, like torchjd."""
    torch.manual_seed(seed)
    return paper_pcgrad_continuing(jacobian)


def aggregate(jacobian: torch.Tensor, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return PCGrad().aggregate(jacobian, [f"t{i}" for i in range(len(jacobian))])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_conflicting_gradients(seed: int) -> None:
    # g1 = (1,0), g2 = (-1,1), g1·g2 = -1:
    # g1' = g1 - (-1/||g2||²) g2 = (1,0) + ½(-1,1) = (½,½);  g2' = g2 - (-1/||g1||²) g1 = (0,1); sum (½, 3/2).
    result = aggregate(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), seed)
    torch.testing.assert_close(result, torch.tensor([0.5, 1.5]))


def test_projected_gradients_no_longer_conflict() -> None:
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    g1_pc = g1 - (g1 @ g2) / (g2 @ g2) * g2
    assert g1_pc @ g2 == pytest.approx(0.0)


def test_non_conflicting_gradients_are_summed_unchanged() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])  # all pairwise dots >= 0
    torch.testing.assert_close(aggregate(jacobian), jacobian.sum(0))


def test_three_gradients_order_matters_and_matches_the_paper() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [-2.0, -1.0]])
    results = set()
    for seed in range(12):
        expected = paper_pcgrad(jacobian, seed)
        torch.testing.assert_close(aggregate(jacobian, seed), expected)
        results.add(tuple(round(v, 5) for v in expected.tolist()))
    assert len(results) > 1, "the projection order should change the result for these gradients"


def test_three_gradients_hand_worked_order() -> None:
    # g1 = (1,0), g2 = (-1,2), g3 = (-2,-1); the other two tasks are visited in random order.
    # i = 1: both conflict; 2 then 3: (1,0) + (1/5)(-1,2) = (4/5,2/5), ·g3 = -2 -> + (2/5)(-2,-1) = (0,0);
    #        3 then 2: (1,0) + (2/5)(-2,-1) = (1/5,-2/5), ·g2 = -1 -> + (1/5)(-1,2) = (0,0).
    # i = 2: 1 then 3: (-1,2) + (1,0) = (0,2), ·g3 = -2 -> + (2/5)(-2,-1) = (-4/5, 8/5);
    #        3 then 1: g2·g3 = 0 (kept), ·g1 = -1 -> (0,2).
    # i = 3: 1 then 2: (-2,-1) + 2(1,0) = (0,-1), ·g2 = -2 -> + (2/5)(-1,2) = (-2/5,-1/5);
    #        2 then 1: g3·g2 = 0 (kept), ·g1 = -2 -> (0,-1).
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [-2.0, -1.0]])
    by_order = {
        1: {(0, 2): torch.tensor([-0.8, 1.6]), (2, 0): torch.tensor([0.0, 2.0])},
        2: {(0, 1): torch.tensor([-0.4, -0.2]), (1, 0): torch.tensor([0.0, -1.0])},
    }
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)  # torchjd draws one randperm(m) per task i, in order
        orders = [tuple(j for j in torch.randperm(3).tolist() if j != i) for i in range(3)]
        expected = by_order[1][orders[1]] + by_order[2][orders[2]]
        torch.testing.assert_close(aggregate(jacobian, seed), expected)
        seen.add((orders[1], orders[2]))
    assert len(seen) > 1


def test_random_high_dimensional_case_matches_the_paper() -> None:
    jacobian = torch.randn(5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for seed in range(3):
        torch.testing.assert_close(aggregate(jacobian, seed), paper_pcgrad(jacobian, seed))


def test_random_order_comes_from_the_algorithms_own_stream() -> None:
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [-2.0, -1.0]])
    tasks = ["a", "b", "c"]
    algorithm = PCGrad(tasks_per_step=3, seed=5)
    torch.manual_seed(999)
    global_state = torch.get_rng_state()
    results = []
    for _ in range(6):
        with algorithm.own_random_stream():
            results.append(algorithm.aggregate(jacobian, tasks))
    assert torch.equal(torch.get_rng_state(), global_state), "the global generator is left alone"
    torch.manual_seed(5)  # the stream is the one torch.manual_seed(seed) starts
    expected = []
    for _ in range(6):
        expected.append(paper_pcgrad_continuing(jacobian))
    torch.testing.assert_close(torch.stack(results), torch.stack(expected))
    assert len({tuple(r.tolist()) for r in results}) > 1, "successive steps draw new orders"
    # the stream's position is state: a copy restored from state_dict continues identically
    copy = PCGrad(tasks_per_step=3, seed=5)
    copy.load_state_dict(algorithm.state_dict())
    with algorithm.own_random_stream():
        want = algorithm.aggregate(jacobian, tasks)
    with copy.own_random_stream():
        torch.testing.assert_close(copy.aggregate(jacobian, tasks), want)


def paper_pcgrad_continuing(jacobian: torch.Tensor) -> torch.Tensor:
    """paper_pcgrad without re-seeding: continues the global stream."""
    total = torch.zeros_like(jacobian[0])
    for i in range(len(jacobian)):
        g = jacobian[i].clone()
        for j in torch.randperm(len(jacobian)).tolist():
            if j != i and g @ jacobian[j] < 0:
                g = g - (g @ jacobian[j]) / (jacobian[j] @ jacobian[j]) * jacobian[j]
        total += g
    return total


def test_schedule_and_validation() -> None:
    assert PCGrad().schedule() == IIDSchedule(tasks_per_step=8, q=0.2)
    assert PCGrad(tasks_per_step=3, q=0.0).schedule() == IIDSchedule(tasks_per_step=3, q=0.0)
    with pytest.raises(ValueError, match="tasks_per_step must be >= 1"):
        PCGrad(tasks_per_step=0)
    with pytest.raises(ValueError, match="q must be >= 0"):
        PCGrad(q=-0.1)


# ------------------------------------------------------------------ a real step through Lightning
def test_step_on_the_landscape_is_the_hand_worked_pcgrad_step(tmp_path) -> None:
    # L_i = -200 exp(-0.2 r_i): ∇L_i = 40 exp(-0.2 r_i) (φ - x_i) / r_i. From φ = (0,0):
    #   a at (5,0):  r = 5,   g_a = 40 e^-1 (-1, 0)
    #   b at (-5,5): r = 5√2, g_b = 40 e^-√2 (1,-1)/√2        g_a·g_b < 0: they conflict.
    ga = 40 * math.exp(-1.0) * torch.tensor([-1.0, 0.0])
    gb = 40 * math.exp(-math.sqrt(2.0)) * torch.tensor([1.0, -1.0]) / math.sqrt(2.0)
    expected_direction = (ga - (ga @ gb) / (gb @ gb) * gb) + (gb - (gb @ ga) / (ga @ ga) * ga)
    model = SyntheticLandscape(optima={"a": [5.0, 0.0], "b": [-5.0, 5.0]}, init=[0.0, 0.0])
    module = fit_synthetic(model, PCGrad(tasks_per_step=2), ["a", "b"], steps=1, lr=0.01, tmp_path=tmp_path)
    torch.testing.assert_close(model.phi.detach(), -0.01 * expected_direction)
    assert module.trainer.global_step == 1


def test_heads_keep_their_plain_gradient_and_shared_gets_the_surgery(tmp_path) -> None:
    tasks = ["a", "b", "c"]
    captured: dict[str, torch.Tensor] = {}

    class Spy(PCGrad):
        def training_step(self, module, batch):
            captured["batch"] = dict(batch)
            return super().training_step(module, batch)

        def aggregate(self, jacobian, tasks_):
            captured["G"], captured["tasks"] = jacobian.clone(), list(tasks_)
            torch.manual_seed(123)
            out = super().aggregate(jacobian, tasks_)
            captured["direction"] = out.clone()
            return out

    before = SharedWithHeads(tasks)
    model = SharedWithHeads(tasks)
    fit_synthetic(model, Spy(tasks_per_step=2), tasks, steps=1, lr=0.1, tmp_path=tmp_path)
    sampled = captured["tasks"]
    assert len(sampled) == 2 and len(set(sampled)) == 2
    # independent: per-task gradients of the initial model on the same batches
    batches = captured["batch"]
    rows = []
    for t in sampled:
        before.zero_grad()
        before(t, batches[t]).loss.backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in before.shared.parameters()]))
        for name, p in before.heads[t].named_parameters():
            expected = p.detach() - 0.1 * p.grad
            torch.testing.assert_close(dict(model.heads[t].named_parameters())[name].detach(), expected)
    torch.testing.assert_close(captured["G"], torch.stack(rows))
    torch.manual_seed(123)
    torch.testing.assert_close(captured["direction"], paper_pcgrad(torch.stack(rows), 123))
    flat_before = torch.cat([p.detach().reshape(-1) for p in before.shared.parameters()])
    flat_after = torch.cat([p.detach().reshape(-1) for p in model.shared.parameters()])
    torch.testing.assert_close(flat_after, flat_before - 0.1 * captured["direction"])
    unsampled = [t for t in tasks if t not in sampled][0]
    for p_after, p_before in zip(model.heads[unsampled].parameters(), before.heads[unsampled].parameters()):
        torch.testing.assert_close(p_after.detach(), p_before.detach())


def test_pcgrad_with_no_conflict_equals_mtl(tmp_path) -> None:
    # Three wells close together, far above the start: every pair of gradients has a positive dot product.
    optima = {"a": [0.0, 10.0], "b": [2.0, 10.0], "c": [-2.0, 10.0]}
    phis = []
    for algorithm in (PCGrad(tasks_per_step=3), MTL(tasks_per_step=3)):
        model = SyntheticLandscape(optima=optima, init=[5.0, -20.0])
        fit_synthetic(model, algorithm, list(optima), steps=3, lr=0.05, tmp_path=tmp_path)
        phis.append(model.phi.detach())
    torch.testing.assert_close(phis[0], phis[1])
