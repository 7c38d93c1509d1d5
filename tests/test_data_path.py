"""Training batches collated in DataLoader workers are the batches collated in the training process, in the same
order, and the loader's saved state is the position of the last batch handed to training, although the workers
ran ahead: a run stopped and resumed with workers ends bitwise identical to a straight run without them.
Sharded strategies are refused naming the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from datamodules.schedule import BlockSchedule, IIDSchedule, TaskSampler
from datamodules.streams import ScheduledLoader, TaskStream
from lightning_modules.strategies import check_strategy
from tests.helpers import assert_same_run, load_checkpoint, log_dir, run_cli, tiny_config

SIZES = {"a": 13, "b": 29, "c": 7}


IID = IIDSchedule(2, q=0.5)


class Augmented(list):
    """Rows whose reading draws from torch's generator, as image augmentation does: x + a uniform draw."""

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        row = super().__getitem__(index)
        return {"x": row["x"] + torch.rand(())}


def loader(workers: int, schedule: IIDSchedule | BlockSchedule = IID, augmented: bool = False) -> ScheduledLoader:
    data = {
        n: (Augmented if augmented else list)({"x": torch.full((3,), float(100 * i + j))} for j in range(size))
        for i, (n, size) in enumerate(SIZES.items())
    }
    streams = {n: TaskStream(n, rows, 4, default_collate, seed=5, rank=1, world_size=2) for n, rows in data.items()}
    sampler = TaskSampler(schedule, list(SIZES), list(SIZES.values()), seed=3)
    return ScheduledLoader(sampler, streams, steps_per_epoch=10, num_workers=workers)


def flat(batch: list[tuple[str, dict[str, torch.Tensor]]]) -> list[tuple[str, list[float]]]:
    return [(task, data["x"][:, 0].tolist()) for task, data in batch]


@pytest.mark.parametrize("schedule", [IIDSchedule(2, q=0.5), BlockSchedule(3)], ids=["iid", "block"])
def test_workers_give_the_same_batches_and_a_state_at_the_consumed_position(schedule: object) -> None:
    plain, ahead = loader(0, schedule), loader(2, schedule)  # type: ignore[arg-type]
    reference = [flat(b) for b in plain] + [flat(b) for b in plain]  # two epochs
    seen, stops = [], {}
    for epoch in range(2):
        for i, batch in enumerate(ahead):
            seen.append(flat(batch))
            stops[(epoch, i)] = ahead.state_dict()
    assert seen == reference

    # the state after batch 4 of epoch 1, taken while workers had prepared more, continues with batch 5
    resumed = loader(2, schedule)  # type: ignore[arg-type]
    resumed.load_state_dict(stops[(1, 4)])
    assert [flat(b) for b in resumed] == reference[15:]
    assert stops[(1, 4)]["position"] == 5


def test_a_loop_left_early_restarts_from_the_last_batch_handed_out() -> None:
    plain, ahead = loader(0), loader(2)
    reference = [flat(b) for b in plain]
    first = []
    for batch in ahead:
        first.append(flat(batch))
        if len(first) == 3:
            break  # the workers had drawn further
    state = ahead.state_dict()
    assert state["position"] == 3
    continued = loader(0)
    continued.load_state_dict(state)
    assert first + [flat(b) for b in continued] == reference


def test_random_reads_are_seeded_per_batch_the_same_with_workers_and_after_a_resume() -> None:
    before = torch.manual_seed(0).get_state()
    reference = [flat(b) for b in loader(0, augmented=True)]
    assert torch.equal(torch.get_rng_state(), before)  # the training RNG (dropout) is not consumed
    assert [flat(b) for b in loader(2, augmented=True)] == reference  # in workers: the same draws
    noise = [x % 1 for batch in reference for _, xs in batch for x in xs]
    assert len(set(noise)) == len(noise)  # every example of every batch draws afresh
    torch.manual_seed(123)  # another global RNG state: a resumed process
    resumed = loader(0, augmented=True)
    resumed.load_state_dict(_state_after(3))
    assert [flat(b) for b in resumed] == reference[3:]


def _state_after(batches: int) -> dict:
    ahead = loader(0, augmented=True)
    for i, _ in enumerate(ahead):
        if i + 1 == batches:
            return ahead.state_dict()
    raise AssertionError("too few batches")


SEQUENTIAL_REPTILE = {
    "class_path": "lightning_modules.algorithms.SequentialReptile",
    "init_args": {"inner_steps": 5, "outer_lr": 0.5, "q": 0.5},
}


@pytest.mark.slow
def test_a_run_with_loader_workers_resumes_into_the_run_without(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "cfg" / "run.yaml", SEQUENTIAL_REPTILE, every_n_train_steps=3)
    workers = ["--performance.loader_workers=2", "--performance.pin_memory=false"]

    def run(root: Path, steps: int, *extra: str) -> Path:
        return log_dir(run_cli(["--config", str(config), f"--trainer.max_steps={steps}", *extra], root))

    straight = run(tmp_path / "straight", 12)
    stopped = run(tmp_path / "stopped", 7, *workers)
    last = stopped / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 7
    run(tmp_path / "stopped", 12, *workers, "--ckpt_path", str(last))
    assert_same_run(straight, stopped, 12)


def test_sharded_strategies_are_refused_naming_ddp() -> None:
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    check_strategy(DDPStrategy())
    with pytest.raises(ValueError, match=r"FSDPStrategy shards the parameters.*--trainer.strategy ddp"):
        check_strategy(FSDPStrategy())
