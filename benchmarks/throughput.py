"""Throughput on CPU: this package (Trainer + MultiTaskModule + MultiTaskDataModule) against a hand-written
PyTorch loop doing the same AdamW steps on the same batches, and the cost of the GradientAlignment callback.

    python benchmarks/throughput.py [--steps N] [--mtl-steps N] [--warmup W] [--repeats R] [--threads T]
                                    [--logger tensorboard|none] [--interval N] [--skip-mtl]

Model: a BERT-shaped encoder from a config (hidden 128, 4 layers, 4 heads, FFN 512, vocabulary 8000, sequence
64, batch 16) with one shared head; 4 tasks of random tokens. Runs, interleaved in each repeat:
  plain/seq_reptile   inner AdamW steps, one task per step (p_t ∝ N_t^q), φ ← φ + η(θ − φ) every K steps
  pkg/seq_reptile     the same through the package
  pkg/seq_reptile+align  the same plus GradientAlignment at its default interval
  plain/mtl, pkg/mtl  the sum of m task losses per step
The plain loop draws its batches with the package's TaskSampler/TaskStream (the same seeds), so both sides
see the same batches and their final weights are compared as a check that they do the same work.
Only steps after the warm-up are timed (from the end of step W to the end of step N, so the Trainer's
start-up and tear-down are excluded); the package runs log to TensorBoard as real runs do (every 50 steps),
with the progress bar, checkpointing and validation off.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from callbacks.alignment import GradientAlignment  # noqa: E402
from datamodules.multitask import MultiTaskDataModule  # noqa: E402
from datamodules.schedule import IIDSchedule, TaskSampler  # noqa: E402
from datamodules.streams import TaskStream  # noqa: E402
from datamodules.task import TaskDataModule  # noqa: E402
from lightning_modules.algorithms.mtl import MTL  # noqa: E402
from lightning_modules.algorithms.sequential_reptile import SequentialReptile  # noqa: E402
from lightning_modules.models.encoder import EncoderClassifier  # noqa: E402
from lightning_modules.multitask import MultiTaskModule  # noqa: E402

BERT = {
    "vocab_size": 8000,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 512,
    "max_position_embeddings": 64,
}
SEQ, BATCH, TASKS, EXAMPLES = 64, 16, ("t0", "t1", "t2", "t3"), 1024
LR, K, ETA, Q, M, SEED = 1e-4, 20, 0.1, 0.2, 2, 1234


class RandomTokenTask(TaskDataModule):
    """Random token ids and binary labels: compute has the shape of real text classification."""

    def __init__(self, name: str, seed: int) -> None:
        super().__init__(name=name, batch_size=BATCH)
        self.seed = seed

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(self.seed)
        ids = torch.randint(1, BERT["vocab_size"], (EXAMPLES, SEQ), generator=g)
        labels = torch.randint(0, 2, (EXAMPLES,), generator=g)
        mask = torch.ones(SEQ, dtype=torch.long)
        rows = [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(EXAMPLES)]
        self.train_dataset, self.val_dataset, self.test_dataset = rows, rows[:BATCH], rows[:BATCH]


def make_tasks() -> list[RandomTokenTask]:
    tasks = [RandomTokenTask(name, seed=i) for i, name in enumerate(TASKS)]
    for t in tasks:
        t.setup("fit")
    return tasks


def make_model(initial: dict[str, torch.Tensor]) -> EncoderClassifier:
    model = EncoderClassifier(config=BERT, num_labels=2, head="shared", dropout=0.1)
    model.load_state_dict(initial)
    return model


# ---------------------------------------------------------------------------------------------- plain loop
Timing = tuple[float, float]  # (wall seconds, process CPU seconds) of the timed steps


def clock() -> Timing:
    return time.perf_counter(), time.process_time()


def since(start: Timing) -> Timing:
    now = clock()
    return now[0] - start[0], now[1] - start[1]


def plain_loop(
    method: str, initial: dict[str, torch.Tensor], steps: int, warmup: int
) -> tuple[Timing, list[torch.Tensor]]:
    """A hand-written loop: returns (timing of the steps after the warm-up, final trainable parameters)."""
    model = make_model(initial).train()
    tasks = make_tasks()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR)
    sampler = TaskSampler(IIDSchedule(tasks_per_step=1 if method == "seq_reptile" else M, q=Q), list(TASKS),
                          [EXAMPLES] * len(TASKS), seed=SEED)  # fmt: skip
    streams = {t.name: TaskStream(t.name, t.train_dataset, t.batch_size, t.collate, SEED) for t in tasks}
    phi = [p.detach().clone() for p in params]
    torch.manual_seed(SEED)
    start = clock()
    for step in range(1, steps + 1):
        names = sampler.next_tasks()
        loss = sum(model(name, streams[name].next_batch()).loss for name in names)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if method == "seq_reptile" and step % K == 0:
            with torch.no_grad():
                for p, f in zip(params, phi):
                    f.add_(p - f, alpha=ETA)
                    p.copy_(f)
        if step == warmup:
            start = clock()
    return since(start), [p.detach().clone() for p in params]


# ------------------------------------------------------------------------------------------------- package
class StepTimer(Callback):
    """Wall and CPU time from the end of step `warmup` to the end of the last step."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: Timing = (0.0, 0.0)
        self.elapsed: Timing = (0.0, 0.0)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = clock()
        self.elapsed = since(self.start)


class TimedAlignment(GradientAlignment):
    """GradientAlignment that also adds up the wall and CPU time of its probes after the warm-up: a direct
    measure of its cost, steadier than the difference of two runs on a busy machine."""

    def __init__(self, warmup: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.warmup = warmup
        self.spent = [0.0, 0.0]
        self.probes_timed = 0

    def _measure_and_log(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start = clock()
        super()._measure_and_log(trainer, pl_module)
        if trainer.global_step > self.warmup:
            wall, cpu = since(start)
            self.spent[0] += wall
            self.spent[1] += cpu
            self.probes_timed += 1


def package_run(method: str, initial: dict[str, torch.Tensor], steps: int, warmup: int, logger: str,
                callbacks: list[Callback], root: str) -> tuple[Timing, list[torch.Tensor]]:  # fmt: skip
    model = make_model(initial)
    algorithm = SequentialReptile(inner_steps=K, outer_lr=ETA, q=Q) if method == "seq_reptile" else MTL(M, q=Q)
    module = MultiTaskModule(model, algorithm)
    module.configure_optimizers = lambda: torch.optim.AdamW(module.trainable_parameters(), lr=LR)
    data = MultiTaskDataModule(make_tasks(), seed=SEED, steps_per_epoch=steps)
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, default_root_dir=root, callbacks=[timer, *callbacks],
        logger=TensorBoardLogger(root, name="bench") if logger == "tensorboard" else False, log_every_n_steps=50,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0,
    )  # fmt: skip
    torch.manual_seed(SEED)
    trainer.fit(module, datamodule=data)
    return timer.elapsed, [p.detach().clone() for p in module.trainable_parameters()]


# -------------------------------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=220, help="optimizer steps per run, warm-up included")
    parser.add_argument("--mtl-steps", type=int, default=120, help="the same for the (slower) MTL runs")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps at the start of each run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every run")
    parser.add_argument("--logger", choices=("tensorboard", "none"), default="tensorboard", help="package runs")
    parser.add_argument("--interval", type=int, default=None, help="GradientAlignment interval (default: its own)")
    parser.add_argument("--skip-mtl", action="store_true", help="only the Sequential Reptile runs")
    args = parser.parse_args()
    if min(args.steps, args.mtl_steps) <= args.warmup or args.warmup < 1:
        parser.error("need 1 <= --warmup < --steps, --mtl-steps")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in EncoderClassifier(config=BERT, num_labels=2).state_dict().items()}
    align_kwargs = {} if args.interval is None else {"every_n_steps": args.interval}
    interval = GradientAlignment(**align_kwargs).every_n_steps
    timed = args.steps - args.warmup
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {timed} timed steps "
        f"(MTL: {args.mtl_steps - args.warmup}) after {args.warmup} warm-up, "
        f"{args.repeats} repeats, package logger: {args.logger}, GradientAlignment every {interval} steps",
        flush=True,
    )
    if timed % interval:
        print(f"note: {timed} timed steps is not a multiple of the interval {interval}: the overhead is approximate")

    runs = ["plain/seq_reptile", "pkg/seq_reptile", "pkg/seq_reptile+align"]
    if not args.skip_mtl:
        runs += ["plain/mtl", "pkg/mtl"]
    timings: dict[str, list[Timing]] = {r: [] for r in runs}  # seconds per step (wall, CPU)
    probe_share: list[Timing] = []  # the alignment probes' share of the timed training time (wall, CPU)
    finals: dict[str, list[torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as root:
        for repeat in range(args.repeats):
            for run in runs[repeat % len(runs) :] + runs[: repeat % len(runs)]:  # rotate against order effects
                side, rest = run.split("/")
                method = rest.split("+")[0]
                steps = args.mtl_steps if method == "mtl" else args.steps
                if side == "plain":
                    timing, final = plain_loop(method, initial, steps, args.warmup)
                else:
                    callbacks = [TimedAlignment(args.warmup, **align_kwargs)] if rest.endswith("+align") else []
                    timing, final = package_run(method, initial, steps, args.warmup, args.logger, callbacks, root)
                    if callbacks:
                        spent = callbacks[0].spent
                        probe_share.append((spent[0] / (timing[0] - spent[0]), spent[1] / (timing[1] - spent[1])))
                n = steps - args.warmup
                timings[run].append((timing[0] / n, timing[1] / n))  # seconds per step
                finals[run] = final
                print(
                    f"  repeat {repeat + 1}: {run:22s} {n / timing[0]:6.2f} steps/s wall, "
                    f"{n / timing[1]:6.2f} steps/CPU-s",
                    flush=True,
                )

    # steps per second (wall) and per CPU second, from the median time of the repeats
    rate = {r: [1 / statistics.median(t[k] for t in ts) for k in (0, 1)] for r, ts in timings.items()}
    print("\nmedian over repeats     steps/s (wall)   steps per CPU-second")
    for r in runs:
        print(f"  {r:22s} {rate[r][0]:10.2f} {rate[r][1]:16.2f}")

    def ratio(a: str, b: str) -> str:
        return f"wall {rate[a][0] / rate[b][0]:.3f}, CPU {rate[a][1] / rate[b][1]:.3f}"

    print("\nratios:")
    print(f"  package / plain, Sequential Reptile:  {ratio('pkg/seq_reptile', 'plain/seq_reptile')}  (target >= 0.97)")
    if not args.skip_mtl:
        print(f"  package / plain, MTL (m={M}):           {ratio('pkg/mtl', 'plain/mtl')}")
    overhead = [100 * (1 - rate["pkg/seq_reptile+align"][k] / rate["pkg/seq_reptile"][k]) for k in (0, 1)]
    print(f"  GradientAlignment overhead:           wall {overhead[0]:+.1f} %, CPU {overhead[1]:+.1f} %", end="")
    print("  (target <= 5 %; difference of two runs)")
    share = [100 * statistics.median(p[k] for p in probe_share) for k in (0, 1)]
    print(f"  GradientAlignment probes' own time:   wall {share[0]:+.1f} %, CPU {share[1]:+.1f} %", end="")
    print(f"  of the training time around them ({(timed // interval)} probe(s) per run)")
    pairs = [("plain/seq_reptile", "pkg/seq_reptile"), ("pkg/seq_reptile", "pkg/seq_reptile+align")]
    if not args.skip_mtl:
        pairs.append(("plain/mtl", "pkg/mtl"))
    for a, b in pairs:
        diff = max((x - y).abs().max().item() for x, y in zip(finals[a], finals[b]))
        print(f"  max |θ({a}) − θ({b})| at the end: {diff:.3g}")


if __name__ == "__main__":
    main()
