"""A ten-minute proof of the template on one GPU (run through benchmarks/gpu_smoke.sh): an mBERT-base-shaped
encoder built from a config (no downloads) trained through Trainer + MultiTaskModule + MultiTaskDataModule.

1. Step time and peak GPU memory per method (Sequential Reptile, MTL, PCGrad) and precision (32-true, 32-true with
   TF32 matmuls, bf16-mixed, 16-mixed); each case must keep its losses finite, take its steps (16-mixed: the loss
   scale did not collapse) and lower the loss of a learnable task.
2. Exact resume: Sequential Reptile stopped in the middle of an inner loop and resumed ends bitwise identical to
   a straight run (deterministic algorithms on).

`--device cpu --tiny` runs the same with a small model on the CPU (a check of the script itself).
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

from datamodules.multitask import MultiTaskDataModule  # noqa: E402
from datamodules.task import TaskDataModule  # noqa: E402
from lightning_modules.algorithms.mtl import MTL  # noqa: E402
from lightning_modules.algorithms.pcgrad import PCGrad  # noqa: E402
from lightning_modules.algorithms.sequential_reptile import SequentialReptile  # noqa: E402
from lightning_modules.models.encoder import EncoderClassifier  # noqa: E402
from lightning_modules.multitask import MultiTaskModule  # noqa: E402

MBERT = {"vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
         "intermediate_size": 3072, "max_position_embeddings": 512}  # fmt: skip
TINY = {"vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64}  # fmt: skip
TASKS, M = ("t0", "t1", "t2", "t3"), 4
CASES = [("32-true", "highest"), ("32-true", "high"), ("bf16-mixed", "highest"), ("16-mixed", "highest")]


class TokenTask(TaskDataModule):
    """Random tokens and labels, the label written into token 1 (ids 5 and 6): learnable in a few steps."""

    def __init__(self, name: str, seed: int, seq: int, batch: int, vocab: int) -> None:
        super().__init__(name=name, batch_size=batch)
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, vocab, (64 * batch, seq), generator=g)
        labels = torch.randint(0, 2, (len(ids),), generator=g)
        ids[:, 1] = 5 + labels
        mask = torch.ones(seq, dtype=torch.long)
        self.train_dataset = [{"input_ids": i, "attention_mask": mask, "labels": y} for i, y in zip(ids, labels)]
        self.val_dataset = self.test_dataset = self.train_dataset[:batch]

    def setup(self, stage: str) -> None:
        pass


class Probe(Callback):
    """Loss and wall time of every step (the time synchronised with the device at each step end)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.times: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, *args: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.losses.append(float(outputs["loss"]))
        self.times.append(time.perf_counter())


def algorithm(method: str, inner_steps: int) -> Any:
    if method == "seq_reptile":
        return SequentialReptile(inner_steps=inner_steps, outer_lr=0.1)
    return MTL(M, q=0.2) if method == "mtl" else PCGrad(M, q=0.2)


Initial = dict[str, torch.Tensor] | None


def fit(args: argparse.Namespace, method: str, precision: str, steps: int, root: str, ckpt: str | None = None,
        deterministic: bool = False, initial: Initial = None) -> tuple[MultiTaskModule, Probe]:  # fmt: skip
    config = TINY if args.tiny else MBERT
    model = EncoderClassifier(config=config, num_labels=2, dropout=0.1)
    if initial is not None:
        model.load_state_dict(initial)
    module = MultiTaskModule(model, algorithm(method, inner_steps=args.inner_steps))
    module.configure_optimizers = lambda: torch.optim.AdamW(module.trainable_parameters(), lr=args.lr)
    tasks = [TokenTask(t, i, args.seq, args.batch, config["vocab_size"]) for i, t in enumerate(TASKS)]
    probe = Probe()
    trainer = pl.Trainer(
        max_steps=steps, accelerator=args.device, devices=1, precision=precision, deterministic=deterministic,
        default_root_dir=root, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[probe],
    )  # fmt: skip
    torch.manual_seed(0)
    trainer.fit(module, datamodule=MultiTaskDataModule(tasks, seed=1, steps_per_epoch=10_000), ckpt_path=ckpt,
                weights_only=False)  # fmt: skip
    if ckpt is None:
        trainer.save_checkpoint(Path(root) / f"{method}-{steps}.ckpt")
    return module, probe


def measure(args: argparse.Namespace, root: str) -> list[str]:
    failures, cuda = [], args.device == "cuda"
    print(f"{'method':12s} {'precision':11s} {'matmul':8s} {'ms/step':>8s} {'peak GB':>8s} {'loss first→last':>16s}")
    for method in ("seq_reptile", "mtl", "pcgrad"):
        for precision, matmul in CASES:
            if precision == "16-mixed" and not cuda:
                continue  # Lightning has no float16 autocast on the CPU
            torch.set_float32_matmul_precision(matmul)
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            module, probe = fit(args, method, precision, args.steps, root)
            times = [b - a for a, b in zip(probe.times[args.warmup :], probe.times[args.warmup + 1 :])]
            peak = f"{torch.cuda.max_memory_allocated() / 2**30:8.2f}" if cuda else f"{'n/a':>8s}"
            first, last = (statistics.mean(probe.losses[s]) for s in (slice(0, 5), slice(-5, None)))
            print(f"{method:12s} {precision:11s} {matmul:8s} {1000 * statistics.median(times):8.1f} {peak} "
                  f"{first:7.3f} → {last:6.3f}", flush=True)  # fmt: skip
            scaler = getattr(module.trainer.precision_plugin, "scaler", None)
            if not all(map(torch.isfinite, map(torch.tensor, probe.losses))) or not last < first:
                failures.append(f"{method} {precision} {matmul}: losses not finite or not lower ({first} -> {last})")
            if scaler is not None and scaler.get_scale() < 1.0:
                failures.append(f"{method} {precision}: the loss scale collapsed to {scaler.get_scale()}")
    torch.set_float32_matmul_precision("highest")
    return failures


def resume_check(args: argparse.Namespace, root: str) -> list[str]:
    """Sequential Reptile, stopped after 1.5 inner loops and resumed, against a straight run, bitwise."""
    k = args.inner_steps
    torch.manual_seed(0)
    initial = EncoderClassifier(config=TINY if args.tiny else MBERT, num_labels=2).state_dict()
    total, stop = 2 * k, k + k // 2
    straight, _ = fit(
        args, "seq_reptile", args.resume_precision, total, f"{root}/a", deterministic=True, initial=initial
    )
    again, _ = fit(args, "seq_reptile", args.resume_precision, total, f"{root}/c", deterministic=True, initial=initial)
    if any(not torch.equal(x, y) for x, y in zip(straight.state_dict().values(), again.state_dict().values())):
        return ["resume: two straight runs differ (the device is not deterministic here): the check is inconclusive"]
    fit(args, "seq_reptile", args.resume_precision, stop, f"{root}/b", deterministic=True, initial=initial)
    resumed, _ = fit(args, "seq_reptile", args.resume_precision, total, f"{root}/b",
                     ckpt=f"{root}/b/seq_reptile-{stop}.ckpt", deterministic=True, initial=initial)  # fmt: skip
    a, b = straight.state_dict(), resumed.state_dict()
    bad = [n for n in a if not torch.equal(a[n], b[n])]
    phi = all(torch.equal(x, y) for x, y in zip(straight.algorithm.phi, resumed.algorithm.phi))
    print(f"resume ({args.resume_precision}, stop at {stop} of {total}, K={k}): "
          f"{'bitwise identical' if not bad and phi else f'{len(bad)} tensors differ'}")  # fmt: skip
    return [f"resume: {len(bad)} parameters differ, φ equal: {phi}"] if bad or not phi else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a small model (for a check on the CPU)")
    parser.add_argument("--steps", type=int, default=60, help="steps per measured case")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each case")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--inner-steps", type=int, default=10, help="K of Sequential Reptile")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--resume-precision", default="bf16-mixed")
    args = parser.parse_args()
    if args.tiny:
        args.seq, args.batch, args.lr = min(args.seq, 32), min(args.batch, 8), 1e-3
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; use --device cpu --tiny for a check of the script")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"torch {torch.__version__}, {name}, {'tiny' if args.tiny else 'mBERT-base-shaped'} encoder, "
          f"batch {args.batch} x {args.seq} tokens, {M} tasks per MTL/PCGrad step", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        failures = measure(args, root) + resume_check(args, root)
    print("\n".join(["FAILED:", *failures]) if failures else "all checks passed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
