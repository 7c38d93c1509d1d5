"""`PseudoTaskDataModule`: the Python way into pseudo-tasks (paper §4.3), a MultiTaskDataModule whose training
tasks are the k clusters of one source task; see `pseudo_tasks.py` for the clustering and the YAML way in."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_warn

from datamodules.multitask import MultiTaskDataModule
from datamodules.pseudo_task_clustering import EmbedFn
from datamodules.pseudo_tasks import Covariance, PseudoTaskSplit
from datamodules.schedule import IIDSchedule, ScheduleSpec
from datamodules.task import TaskDataModule


class PseudoTaskDataModule(MultiTaskDataModule):
    """A MultiTaskDataModule whose training tasks are the k clusters of one source task (paper §4.3).

    The arguments are those of `PseudoTaskSplit` (`cluster_seed` is its `seed`, `embed_device` its `device`;
    `seed` and `steps_per_epoch` are MultiTaskDataModule's). Validation/test: the source's splits once (as task
    `<source>_c0`), then the zero-shot tasks. MultiTaskCLI registers MultiTaskDataModule itself (not in subclass
    mode), so from YAML use `PseudoTask` entries instead, or enable `subclass_mode_data` in the CLI.
    """

    def __init__(
        self,
        source: TaskDataModule,
        k: int = 4,
        pca_dim: int | None = 50,
        cluster_seed: int = 0,
        encoder: str | None = None,
        cache_dir: str = ".cache/pseudo_tasks",
        covariance_type: Covariance = "full",
        n_init: int = 10,
        embed_batch_size: int = 64,
        embed_device: str | None = None,
        embed_fn: EmbedFn | None = None,
        zero_shot_tasks: list[TaskDataModule] | None = None,
        seed: int = 1234,
        steps_per_epoch: int | None = None,
    ) -> None:
        split = PseudoTaskSplit(
            source,
            k=k,
            pca_dim=pca_dim,
            seed=cluster_seed,
            encoder=encoder,
            cache_dir=cache_dir,
            covariance_type=covariance_type,
            n_init=n_init,
            embed_batch_size=embed_batch_size,
            device=embed_device,
            embed_fn=embed_fn,
        )
        super().__init__(
            tasks=split.views(), zero_shot_tasks=zero_shot_tasks, seed=seed, steps_per_epoch=steps_per_epoch
        )
        self.split = split

    def _eval_tasks(self) -> list[TaskDataModule]:
        return [self.tasks[0], *self.zero_shot_tasks]

    def attach_schedule(self, schedule: ScheduleSpec) -> None:
        super().attach_schedule(schedule)
        k = len(self.tasks)
        if isinstance(schedule, IIDSchedule) and schedule.tasks_per_step < k and schedule.q != 0:
            rank_zero_warn(
                f"pseudo-tasks: the schedule draws {schedule.tasks_per_step} of {k} clusters with p_t ∝ N_t^"
                f"{schedule.q}; the paper uses p_t = 1/{k} (set the algorithm's q: 0) or all {k} per step"
            )

    def cluster_sizes(self) -> dict[str, int]:
        """Training examples per pseudo-task (after setup('fit') or prepare_data)."""
        return self.split.cluster_sizes()
