"""GradVac: hand-worked target adjustment and EMA, agreement with torchjd's GradVac, per-task-pair state that
follows task names, parameter blocks, and exact save/restore."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torchjd.aggregation import GradVac as TorchJDGradVac

from lightning_modules.algorithms.gradvac import GradVac, gradvac_weights, layer_keys, parameter_blocks


def make(tasks: list[str], named_sizes: list[tuple[str, int]] | None = None, **kwargs) -> GradVac:
    algorithm = GradVac(tasks_per_step=min(len(tasks), 8), **kwargs)
    algorithm.configure(tasks, named_sizes or [("phi", 2)])
    return algorithm


def set_target(algorithm: GradVac, block: int, i: str, j: str, value: float) -> None:
    state = algorithm.state_dict()
    tasks = state["tasks"]
    state["phi_hat"][block, tasks.index(i), tasks.index(j)] = value
    algorithm.load_state_dict(state)


def test_hand_worked_target_adjustment_and_ema() -> None:
    # g1 = (1,0), g2 = (0,1): φ_12 = 0. With target φ̂_12 = 1/2:
    #   w = ||g1|| (φ̂ √(1-φ²) - φ √(1-φ̂²)) / (||g2|| √(1-φ̂²)) = (1/2) / (√3/2) = 1/√3,
    #   g1' = (1, 1/√3), whose cosine with g2 is (1/√3) / (2/√3) = 1/2: exactly the target.
    # φ̂_21 = 0 and φ_21 = 0 is not below it: g2 unchanged. Update = g1' + g2 = (1, 1 + 1/√3).
    # EMA (β = 0.01): φ̂_12 = 0.99·0.5 + 0.01·0 = 0.495; φ̂_21 = 0.
    algorithm = make(["a", "b"])
    set_target(algorithm, 0, "a", "b", 0.5)
    direction = algorithm.aggregate(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ["a", "b"])
    torch.testing.assert_close(direction, torch.tensor([1.0, 1.0 + 1.0 / math.sqrt(3.0)]))
    phi_hat = algorithm.phi_hat["whole_model"]
    assert phi_hat[0, 1].item() == pytest.approx(0.495)
    assert phi_hat[1, 0].item() == pytest.approx(0.0)
    g1_corrected = torch.tensor([1.0, 1.0 / math.sqrt(3.0)])
    assert torch.nn.functional.cosine_similarity(g1_corrected, torch.tensor([0.0, 1.0]), dim=0).item() == (
        pytest.approx(0.5)
    )


def test_zero_targets_make_conflicting_gradients_pcgrad() -> None:
    # φ̂ = 0 at the start: φ_12 = -1/√2 < 0, w = ||g1|| (0 - φ) / ||g2|| = (1/√2)/√2 = 1/2 -> g1' = (1/2, 1/2);
    # φ_21 = -1/√2, w = √2 (1/√2) / 1 = 1 -> g2' = (0, 1). Sum (1/2, 3/2), as PCGrad. φ̂ = 0.01·(-1/√2).
    algorithm = make(["a", "b"])
    direction = algorithm.aggregate(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), ["a", "b"])
    torch.testing.assert_close(direction, torch.tensor([0.5, 1.5]))
    expected = -0.01 / math.sqrt(2.0)
    phi_hat = algorithm.phi_hat["whole_model"]
    assert phi_hat[0, 1].item() == pytest.approx(expected)
    assert phi_hat[1, 0].item() == pytest.approx(expected)


def test_no_correction_above_target_only_ema() -> None:
    algorithm = make(["a", "b"], beta=0.5)
    jacobian = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos = 1/√2 > 0 = target
    torch.testing.assert_close(algorithm.aggregate(jacobian, ["a", "b"]), jacobian.sum(0))
    assert algorithm.phi_hat["whole_model"][0, 1].item() == pytest.approx(0.5 / math.sqrt(2.0))


def test_second_step_moves_towards_the_ema_target() -> None:
    # After step 1 (above) φ̂ = -0.00707; the same gradients again (cos -0.707 < φ̂) get corrected to cos = φ̂.
    algorithm = make(["a", "b"])
    jacobian = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    algorithm.aggregate(jacobian, ["a", "b"])
    target = algorithm.phi_hat["whole_model"][0, 1].item()
    weights, _ = gradvac_weights(jacobian @ jacobian.T, algorithm.phi_hat["whole_model"], beta=0.01)
    # by hand: g1' = g1 + w g2 has cosine exactly φ̂ with g2; the update is g1' + g2', so g2' = update - g1'
    g1, g2 = jacobian
    cos_g1 = (g1 @ g2) / (g1.norm() * g2.norm())
    w = g1.norm() * (target * math.sqrt(1 - cos_g1**2) - cos_g1 * math.sqrt(1 - target**2))
    w = w / (g2.norm() * math.sqrt(1 - target**2))
    g1_corrected = g1 + w * g2
    cos = (g1_corrected @ g2) / (g1_corrected.norm() * g2.norm())
    assert cos.item() == pytest.approx(target, abs=1e-7)  # eps = 1e-8 in the denominators
    direction = weights @ jacobian
    g2_corrected = direction - g1_corrected
    cos2 = (g2_corrected @ g1) / (g2_corrected.norm() * g1.norm())
    assert cos2.item() == pytest.approx(target, abs=1e-7)  # eps = 1e-8 in the denominators


def test_matches_torchjd_gradvac_over_several_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    ours, theirs = make(["a", "b", "c", "d"], [("w", 6)], beta=0.3), TorchJDGradVac(beta=0.3)
    tasks = ["a", "b", "c", "d"]
    for step in range(4):
        jacobian = torch.randn(4, 6, generator=gen, dtype=torch.float64)
        torch.manual_seed(step)
        expected = theirs(jacobian)
        torch.manual_seed(step)
        torch.testing.assert_close(ours.aggregate(jacobian, tasks), expected)
    torch.testing.assert_close(ours.phi_hat["whole_model"], theirs.gramian_weighting._phi_t)


def paper_gradvac(jacobian: torch.Tensor, phi_hat: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's loop on vectors (not the Gramian), one torch.randperm(m - 1) per task."""
    phi_hat = phi_hat.clone()
    total = torch.zeros_like(jacobian[0])
    m = len(jacobian)
    for i in range(m):
        g = jacobian[i].clone()
        others = [j for j in range(m) if j != i]
        for j in [others[k] for k in torch.randperm(m - 1).tolist()]:
            gj = jacobian[j]
            cos = (g @ gj) / (g.norm() * gj.norm())
            target = phi_hat[i, j]
            if cos < target:
                w = g.norm() * (target * (1 - cos**2).sqrt() - cos * (1 - target**2).sqrt())
                g = g + w / (gj.norm() * (1 - target**2).sqrt()) * gj
            phi_hat[i, j] = (1 - beta) * target + beta * cos
        total += g
    return total, phi_hat


def test_state_follows_task_names_when_the_sampled_subset_changes() -> None:
    tasks = ["a", "b", "c", "d"]
    algorithm = make(tasks, [("w", 3)], beta=0.2)
    reference = torch.zeros(4, 4, dtype=torch.float64)  # the T×T targets, kept by hand
    gen = torch.Generator().manual_seed(1)
    for step, sampled in enumerate([["a", "b", "c"], ["c", "d"], ["d", "b", "a"], ["b", "c", "a"]]):
        jacobian = torch.randn(len(sampled), 3, generator=gen, dtype=torch.float64)
        index = torch.tensor([tasks.index(t) for t in sampled])
        torch.manual_seed(step)
        expected, sub = paper_gradvac(jacobian, reference[index][:, index], beta=0.2)
        reference[index[:, None], index[None, :]] = sub
        torch.manual_seed(step)
        torch.testing.assert_close(algorithm.aggregate(jacobian, sampled), expected)
        torch.testing.assert_close(algorithm.phi_hat["whole_model"], reference)
        if step == 0:  # d was not sampled: its row and column are still the initial 0
            assert reference[3].abs().sum() == 0 and reference[:, 3].abs().sum() == 0
            assert reference[:3, :3].abs().sum() > 0
    assert algorithm.phi_hat["whole_model"].diagonal().abs().sum() == 0


def test_unknown_or_repeated_tasks_are_refused() -> None:
    algorithm = make(["a", "b"])
    with pytest.raises(ValueError, match="not among GradVac's training tasks"):
        algorithm.aggregate(torch.ones(2, 2), ["a", "z"])
    with pytest.raises(ValueError, match="distinct tasks"):
        algorithm.aggregate(torch.ones(2, 2), ["a", "a"])
    with pytest.raises(RuntimeError, match="setup"):
        GradVac().aggregate(torch.ones(2, 2), ["a", "b"])


def test_layer_keys() -> None:
    names = [
        "backbone.embeddings.word_embeddings.weight",
        "backbone.embeddings.LayerNorm.weight",
        "backbone.encoder.layer.0.attention.self.query.weight",
        "backbone.encoder.layer.0.output.dense.bias",
        "backbone.encoder.layer.11.output.dense.bias",
        "backbone.pooler.dense.weight",
    ]
    assert layer_keys(names) == [
        "backbone.embeddings",
        "backbone.embeddings",
        "backbone.encoder.layer.0",
        "backbone.encoder.layer.0",
        "backbone.encoder.layer.11",
        "backbone.pooler",
    ]
    assert layer_keys(["phi"]) == ["phi"]
    assert layer_keys(["embeddings.weight", "pooler.weight"]) == ["embeddings", "pooler"]
    assert layer_keys(["shared.weight", "shared.bias"]) == ["shared", "shared"]  # one module: one layer
    assert layer_keys(["enc.a.w", "enc.a.b", "enc.b.w"]) == ["enc.a", "enc.a", "enc.b"]


def test_parameter_blocks_for_each_granularity() -> None:
    named = [("emb.weight", 4), ("layer.0.w", 2), ("layer.0.b", 1), ("layer.1.w", 3), ("head.w", 2)]
    assert parameter_blocks(named, "whole_model") == (["whole_model"], [[(0, 12)]])
    names, ranges = parameter_blocks(named, "per_parameter")
    assert names == ["emb.weight", "layer.0.w", "layer.0.b", "layer.1.w", "head.w"]
    assert ranges == [[(0, 4)], [(4, 6)], [(6, 7)], [(7, 10)], [(10, 12)]]
    names, ranges = parameter_blocks(named, "per_layer")
    assert names == ["emb", "layer.0", "layer.1", "head"]
    assert ranges == [[(0, 4)], [(4, 7)], [(7, 10)], [(10, 12)]]
    # a block whose parameters are not adjacent keeps several ranges
    names, ranges = parameter_blocks([("a.x", 1), ("b.x", 2), ("a.y", 3)], "per_layer")
    assert names == ["a", "b"] and ranges == [[(0, 1), (3, 6)], [(1, 3)]]
    with pytest.raises(ValueError, match="granularity must be one of"):
        parameter_blocks(named, "per_head")


def test_each_block_is_vaccinated_with_its_own_state() -> None:
    # Two tasks (so the order is irrelevant), two parameter tensors: per_parameter = GradVac on each part.
    named = [("p.weight", 2), ("q.weight", 3)]
    gen = torch.Generator().manual_seed(4)
    per_param = make(["a", "b"], named, granularity="per_parameter", beta=0.5)
    whole = make(["a", "b"], named, granularity="whole_model", beta=0.5)
    parts = [make(["a", "b"], [("x", 2)], beta=0.5), make(["a", "b"], [("x", 3)], beta=0.5)]
    for _ in range(3):
        jacobian = torch.randn(2, 5, generator=gen, dtype=torch.float64)
        left, right = jacobian[:, :2], jacobian[:, 2:]
        expected = torch.cat([parts[0].aggregate(left, ["a", "b"]), parts[1].aggregate(right, ["a", "b"])])
        torch.testing.assert_close(per_param.aggregate(jacobian, ["a", "b"]), expected)
        whole.aggregate(jacobian, ["a", "b"])
    state = per_param.phi_hat
    assert list(state) == ["p.weight", "q.weight"]
    torch.testing.assert_close(state["p.weight"], parts[0].phi_hat["whole_model"])
    torch.testing.assert_close(state["q.weight"], parts[1].phi_hat["whole_model"])
    assert not torch.allclose(state["p.weight"], state["q.weight"])
    assert not torch.allclose(whole.phi_hat["whole_model"], state["p.weight"])


def test_per_layer_groups_non_adjacent_parameters() -> None:
    named = [("a.x", 1), ("b.x", 1), ("a.y", 1)]
    algorithm = make(["s", "t"], named, granularity="per_layer", beta=1.0)
    jacobian = torch.tensor([[1.0, 1.0, 0.0], [-1.0, 1.0, 1.0]], dtype=torch.float64)
    direction = algorithm.aggregate(jacobian, ["s", "t"])
    # block a = columns 0 and 2: g_s = (1,0), g_t = (-1,1) conflict -> (1/2, 3/2) as PCGrad (targets 0)
    # block b = column 1: g_s = 1, g_t = 1, cos 1 -> no change, sum 2
    torch.testing.assert_close(direction, torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64))
    assert algorithm.phi_hat["b"][0, 1].item() == pytest.approx(1.0)  # β = 1: φ̂ = last cosine
    assert algorithm.phi_hat["a"][0, 1].item() == pytest.approx(-1 / math.sqrt(2.0))


def test_zero_gradient_pairs_are_skipped() -> None:
    algorithm = make(["a", "b"], beta=0.5)
    set_target(algorithm, 0, "a", "b", 0.3)
    jacobian = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    torch.testing.assert_close(algorithm.aggregate(jacobian, ["a", "b"]), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(
        algorithm.phi_hat["whole_model"], torch.tensor([[0.0, 0.3], [0.0, 0.0]], dtype=torch.float64)
    )


def test_state_dict_round_trip_resumes_exactly() -> None:
    tasks = ["a", "b", "c"]
    named = [("l.0.w", 3), ("l.1.w", 2)]
    gen = torch.Generator().manual_seed(2)
    steps = [torch.randn(2, 5, generator=gen) for _ in range(4)]
    subsets = [["a", "b"], ["c", "a"], ["b", "c"], ["a", "c"]]
    original = make(tasks, named, granularity="per_layer")
    torch.manual_seed(0)
    for jacobian, sampled in zip(steps[:2], subsets[:2]):
        original.aggregate(jacobian, sampled)
    buffer = io.BytesIO()
    torch.save({"algorithm_state": original.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)["algorithm_state"]
    rng = torch.get_rng_state()
    expected = [original.aggregate(j, s) for j, s in zip(steps[2:], subsets[2:])]

    resumed = GradVac(tasks_per_step=2, granularity="per_layer")
    resumed.load_state_dict(saved)  # as Lightning does: before setup
    resumed.configure(tasks, named)
    torch.set_rng_state(rng)
    for (jacobian, sampled), want in zip(zip(steps[2:], subsets[2:]), expected):
        assert torch.equal(resumed.aggregate(jacobian, sampled), want)
    for name in original.phi_hat:
        assert torch.equal(resumed.phi_hat[name], original.phi_hat[name])


def test_loading_state_for_other_tasks_or_blocks_fails_clearly() -> None:
    state = make(["a", "b"]).state_dict()
    other = GradVac(tasks_per_step=2)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="saved for tasks"):
        other.configure(["a", "c"], [("phi", 2)])
    other = GradVac(tasks_per_step=2, granularity="per_parameter")
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="parameter blocks"):
        other.configure(["a", "b"], [("phi", 2)])


def test_validation() -> None:
    with pytest.raises(ValueError, match="beta"):
        GradVac(beta=1.5)
    with pytest.raises(ValueError, match="granularity must be one of"):
        GradVac(granularity="all_layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tasks_per_step must be >= 1"):
        GradVac(tasks_per_step=0)
    with pytest.raises(ValueError, match="q must be >= 0"):
        GradVac(q=-1.0)
    assert GradVac().beta == 0.01 and GradVac().schedule().tasks_per_step == 8


@pytest.mark.slow
def test_per_parameter_gradvac_resumes_exactly_on_a_model_with_heads_and_dropout(tmp_path) -> None:
    """Through the CLI: 3 tasks, 2 per step (so the T×T targets are gathered/scattered by name), AdamW,
    dropout; 4 steps + resume to 8 equals 8 straight steps, parameters and targets bit for bit."""
    from tests.helpers import load_checkpoint, log_dir, run_cli, tiny_config

    algorithm = {
        "class_path": "lightning_modules.algorithms.gradvac.GradVac",
        "init_args": {"tasks_per_step": 2, "beta": 0.5, "granularity": "per_parameter"},
    }
    tasks = {"a": 24, "b": 40, "c": 16}
    config = tiny_config(tmp_path / "gradvac.yaml", algorithm, tasks=tasks, max_steps=8, every_n_train_steps=4)
    straight = log_dir(run_cli(["--config", str(config)], tmp_path / "straight"))
    split = log_dir(run_cli(["--config", str(config), "--trainer.max_steps=4"], tmp_path / "split"))
    ckpt = split / "checkpoints" / "last.ckpt"
    state = load_checkpoint(ckpt)["multitask"]["algorithm_state"]
    assert state["tasks"] == ["a", "b", "c"] and state["blocks"] == ["trunk.weight", "trunk.bias"]
    assert state["phi_hat"].abs().sum() > 0
    resumed = log_dir(
        run_cli(["--config", str(config), "--trainer.max_steps=8", f"--ckpt_path={ckpt}"], tmp_path / "split")
    )
    want, got = (
        load_checkpoint(straight / "checkpoints" / "last.ckpt"),
        load_checkpoint(resumed / "checkpoints" / "last.ckpt"),
    )
    assert want["global_step"] == got["global_step"] == 8
    for name, tensor in want["state_dict"].items():
        assert torch.equal(tensor, got["state_dict"][name]), name
    want_state, got_state = want["multitask"]["algorithm_state"], got["multitask"]["algorithm_state"]
    assert torch.equal(want_state["phi_hat"], got_state["phi_hat"])
    assert torch.equal(want_state["rng"], got_state["rng"])
