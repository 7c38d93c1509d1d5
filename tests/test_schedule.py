"""Task schedules and the streams that realise them: p_t ∝ N_t^q by hand, m distinct tasks per step,
Reptile's blocks, determinism under the seed, and state round trips (what exact resume relies on)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from datamodules.schedule import BlockSchedule, IIDSchedule, TaskSampler, task_probabilities
from datamodules.streams import ScheduledLoader, TaskStream

NAMES = ["en", "de", "fr", "sw", "te"]


def draw(sampler: TaskSampler, n: int) -> list[list[str]]:
    return [sampler.next_tasks() for _ in range(n)]


def test_probabilities_by_hand() -> None:
    # sizes [100, 1000], q = 1/2: weights 10 and sqrt(1000) = 31.6227766
    p = task_probabilities([100, 1000], 0.5)
    assert p.tolist() == pytest.approx([10 / (10 + math.sqrt(1000)), math.sqrt(1000) / (10 + math.sqrt(1000))])
    assert p.tolist() == pytest.approx([0.2402530734, 0.7597469266])
    assert task_probabilities([100, 1000], 1.0).tolist() == pytest.approx([1 / 11, 10 / 11])
    assert task_probabilities([100, 1000, 7], 0.0).tolist() == pytest.approx([1 / 3] * 3)
    # the paper's q = 1/5: 32^(1/5) = 2, 1^(1/5) = 1
    assert task_probabilities([32, 1], 0.2).tolist() == pytest.approx([2 / 3, 1 / 3])


@pytest.mark.parametrize(
    ("sizes", "q", "message"),
    [([10, 20], -0.1, "q must be >= 0"), ([], 0.2, "at least one task"), ([10, 0], 0.2, "at least one training")],
)
def test_probabilities_reject_bad_input(sizes: list[int], q: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        task_probabilities(sizes, q)


def test_iid_draws_follow_p() -> None:
    sampler = TaskSampler(IIDSchedule(tasks_per_step=1, q=0.5), ["small", "big"], [100, 1000], seed=0)
    counts = Counter(t for (t,) in draw(sampler, 5000))
    assert counts["small"] / 5000 == pytest.approx(0.2402530734, abs=0.025)  # ~4 standard deviations


def test_iid_draws_m_distinct_tasks_per_step() -> None:
    sampler = TaskSampler(IIDSchedule(tasks_per_step=3, q=0.2), NAMES, [10, 20, 30, 40, 50], seed=3)
    steps = draw(sampler, 300)
    assert all(len(step) == 3 and len(set(step)) == 3 and set(step) <= set(NAMES) for step in steps)
    assert {t for step in steps for t in step} == set(NAMES)
    everything = TaskSampler(IIDSchedule(tasks_per_step=5, q=0.2), NAMES, [1] * 5, seed=3)
    assert all(sorted(step) == sorted(NAMES) for step in draw(everything, 10))


def test_iid_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="tasks_per_step=3 is larger than the number of tasks"):
        TaskSampler(IIDSchedule(tasks_per_step=3), ["a", "b"], [1, 1], seed=0)
    with pytest.raises(ValueError, match="tasks_per_step must be >= 1"):
        TaskSampler(IIDSchedule(tasks_per_step=0), ["a", "b"], [1, 1], seed=0)
    with pytest.raises(ValueError, match="task list is empty"):
        TaskSampler(IIDSchedule(tasks_per_step=1), [], [], seed=0)
    with pytest.raises(ValueError, match="steps_per_task must be >= 1"):
        TaskSampler(BlockSchedule(steps_per_task=0), ["a"], [1], seed=0)


def test_block_schedule_order() -> None:
    k, sampler = 3, TaskSampler(BlockSchedule(steps_per_task=3), NAMES, [1] * 5, seed=5)
    steps = [t for (t,) in draw(sampler, 4 * len(NAMES) * k)]
    blocks = [steps[i : i + k] for i in range(0, len(steps), k)]
    assert all(len(set(block)) == 1 for block in blocks)  # each task K consecutive steps
    rounds = [[b[0] for b in blocks[i : i + len(NAMES)]] for i in range(0, len(blocks), len(NAMES))]
    assert all(sorted(r) == sorted(NAMES) for r in rounds)  # every task once per round
    assert len({tuple(r) for r in rounds}) > 1  # and the order is reshuffled between rounds


@pytest.mark.parametrize("spec", [IIDSchedule(tasks_per_step=2, q=0.2), BlockSchedule(steps_per_task=4)])
def test_sampler_is_deterministic_and_its_state_round_trips(spec: IIDSchedule | BlockSchedule) -> None:
    sizes = [10, 20, 30, 40, 50]
    a, b = TaskSampler(spec, NAMES, sizes, seed=9), TaskSampler(spec, NAMES, sizes, seed=9)
    assert draw(a, 50) == draw(b, 50)
    assert draw(TaskSampler(spec, NAMES, sizes, seed=10), 50) != draw(TaskSampler(spec, NAMES, sizes, seed=9), 50)

    sampler = TaskSampler(spec, NAMES, sizes, seed=9)
    draw(sampler, 7)  # mid-block for BlockSchedule (7 = 4 + 3)
    state = sampler.state_dict()
    expected = draw(sampler, 30)
    resumed = TaskSampler(spec, NAMES, sizes, seed=123)  # the seed does not matter once the state is loaded
    resumed.load_state_dict(state)
    assert draw(resumed, 30) == expected
    with pytest.raises(ValueError, match="saved for tasks"):
        TaskSampler(spec, NAMES[:4], sizes[:4], seed=9).load_state_dict(state)


def test_task_streams_shard_disjointly_and_reshuffle_each_pass() -> None:
    data = list(range(12))

    def stream(rank: int) -> TaskStream:
        return TaskStream("en", data, batch_size=3, collate=list, seed=1, rank=rank, world_size=2)

    passes: dict[int, list[list[int]]] = {}
    for rank in (0, 1):
        s = stream(rank)
        passes[rank] = [[i for _ in range(2) for i in s.next_batch()] for _ in range(2)]  # 2 passes of 6
    for p in range(2):
        assert not set(passes[0][p]) & set(passes[1][p])
        assert sorted(passes[0][p] + passes[1][p]) == data
    assert passes[0][0] != passes[0][1]


def test_scheduled_loader_state_round_trips_mid_epoch() -> None:
    def loader() -> ScheduledLoader:
        sampler = TaskSampler(IIDSchedule(tasks_per_step=1, q=0.2), ["a", "b"], [5, 9], seed=4)
        streams = {
            name: TaskStream(name, list(range(n)), batch_size=2, collate=list, seed=4)
            for name, n in [("a", 5), ("b", 9)]
        }
        return ScheduledLoader(sampler, streams, steps_per_epoch=6)

    first = loader()
    assert len(first) == 6
    it = iter(first)
    head = [next(it) for _ in range(4)]
    state = first.state_dict()
    tail = list(it) + list(first)  # the rest of this epoch, then a whole new one
    assert len(head) + len(tail) == 12

    resumed = loader()
    resumed.load_state_dict(state)
    assert list(resumed) + list(resumed) == tail
