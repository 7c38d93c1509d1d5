"""configs/table10 (paper Table 10): every class and argument binds, the settings are the documented ones, and each
method trains a few steps through train.py fit on generated images in every dataset's layout (random-init trunk,
small images)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.algorithms import registry
from tests.helpers import assert_same_run, load_checkpoint, log_dir, run_cli
from tests.image_fixtures import write_all
from tests.table_configs import CONFIGS, resolve_references, table_configs

TABLE10 = CONFIGS / "table10"
TASKS = ["tin-1", "tin-2", "cifar100", "dogs", "aircraft", "cub", "f-mnist", "svhn"]  # the paper's columns, lower case
# The heads' sizes, from the data: the datasets' class counts (Shin et al.'s NUM_CLASSES; Aircraft: variants).
PAPER_CLASSES = {
    "tin-1": 100,
    "tin-2": 100,
    "cifar100": 100,
    "dogs": 120,
    "aircraft": 100,
    "cub": 200,
    "f-mnist": 10,
    "svhn": 10,
}
FIXTURE_CLASSES = {"tin-1": 2, "tin-2": 2, "cifar100": 3, "dogs": 3, "aircraft": 3, "cub": 3, "f-mnist": 10, "svhn": 10}


def test_configs_bind_and_follow_the_paper_and_shin_et_al() -> None:
    configs = table_configs("table10")
    assert registry.keys("table10") == ["mtl", "reptile", "sequential_reptile"] == sorted(configs)
    for name, config in configs.items():
        tasks = config["data"]["tasks"]
        assert [t["init_args"]["name"] for t in tasks] == TASKS, name
        assert all(t["init_args"]["batch_size"] == 128 for t in tasks), name
        model = config["model"]["model"]["init_args"]
        assert "num_classes" not in model and model["pretrained_path"].endswith("resnet18-f37072fd.pth")
        assert config["optimizer"] == {
            "class_path": "torch.optim.SGD",
            "init_args": {"lr": 1e-2, "momentum": 0.9, "weight_decay": 5e-4},
        }
        args = config["model"]["algorithm"]["init_args"]
        if "tasks_per_step" in args:
            assert (args["tasks_per_step"], args["q"]) == (8, 0.2)
        else:
            reptile = name == "reptile"  # K = 1000 / T per task: an outer update per ~1000 batches, as Seq. Reptile's
            assert (args["inner_steps"], args["outer_lr"]) == (125 if reptile else 1000, 0.1)


def fixture_run_args(method: str, directory: Path, steps: int = 3) -> list[str]:
    """configs/table10/<method>.yaml on the generated datasets: 16 x 16 images, batch 2, random-init trunk with
    heads sized by the fixtures, K = 2 for the Reptile family."""
    roots = write_all(directory / "data")
    data = resolve_references(yaml.safe_load((TABLE10 / "_data.yaml").read_text()), TABLE10)
    for task in data["tasks"]:
        kind = task["class_path"].rsplit(".", 1)[-1]
        task["init_args"].update(root=str(roots[kind]), image_size=16, batch_size=2, eval_batch_size=4)
        task["init_args"]["num_classes"] = FIXTURE_CLASSES[task["init_args"]["name"]]
        if kind != "AircraftTask":
            task["init_args"]["val_fraction"] = 0.25
    model = yaml.safe_load((TABLE10 / "_model.yaml").read_text())
    model["init_args"] = {"pretrained_path": None, "random_init": True}
    (directory / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (directory / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    args = [
        f"--config={TABLE10 / f'{method}.yaml'}",
        f"--data={directory / 'data.yaml'}",
        f"--model.model={directory / 'model.yaml'}",
        "--trainer.accelerator=cpu",
        f"--trainer.max_steps={steps}",
        "--trainer.val_check_interval=2",
        "--checkpoint.every_n_train_steps=2",
        "--trainer.log_every_n_steps=1",
        "--trainer.num_sanity_val_steps=0",
    ]
    if "reptile" in method:
        args.append("--model.algorithm.init_args.inner_steps=2")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mtl", "reptile", "sequential_reptile"])
def test_each_method_trains_a_few_steps_on_generated_images(tmp_path: Path, method: str) -> None:
    cli = run_cli(fixture_run_args(method, tmp_path), tmp_path / "logs")
    assert cli.trainer.global_step == 3
    logged = cli.trainer.callback_metrics
    assert "val/avg/accuracy" in logged and all(f"val/{t}/accuracy" in logged for t in TASKS)
    assert 0.0 <= float(logged["val/avg/accuracy"]) <= 1.0
    assert (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_a_run_with_augmentation_resumes_exactly(tmp_path: Path) -> None:
    """Random crops and flips draw from a per-batch seed, so a run stopped mid trajectory (K = 2, step 3) and
    resumed with the global RNG elsewhere (as in a new process) ends bitwise identical to a straight one."""
    args = [a for a in fixture_run_args("sequential_reptile", tmp_path / "config") if "max_steps" not in a]
    straight = log_dir(run_cli([*args, "--trainer.max_steps=6"], tmp_path / "straight"))
    stopped = log_dir(run_cli([*args, "--trainer.max_steps=3"], tmp_path / "stopped"))
    last = stopped / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == 3
    torch.manual_seed(99)  # the resumed run must not depend on the global RNG
    run_cli([*args, "--trainer.max_steps=6", "--ckpt_path", str(last)], tmp_path / "stopped")
    assert_same_run(straight, stopped, 6, trajectory=False)


def test_the_heads_are_sized_by_the_datasets_class_counts(tmp_path: Path) -> None:
    """Instantiated as train.py would (no data read, random trunk): one head per task, of its dataset's size."""
    args = [f"--config={TABLE10 / 'mtl.yaml'}", "--model.model.init_args.pretrained_path=null"]
    cli = run_cli([*args, "--model.model.init_args.random_init=true"], tmp_path, subcommand=None)
    heads = cli.model.model.heads
    assert {task: head.out_features for task, head in heads.items()} == PAPER_CLASSES
