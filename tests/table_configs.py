"""The paper tables' configs (configs/<table>/) made runnable offline on the schema fixtures: each class and argument
checked against its constructor, data sections pointed at fixture files, the backbone replaced by a tiny BERT,
and the paper's hyperparameters checked against the tables in scripts/paper_tables.py."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tests.schema_fixtures import (
    build_tokenizer,
    tiny_bert_config,
    write_glue,
    write_mlqa,
    write_mnli,
    write_squad,
    write_tydiqa,
    write_wikiann,
    write_xnli,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PSEUDO_TASK = "datamodules.pseudo_tasks.PseudoTask"
# The SQuAD fixture is 3 questions: windows of 64 tokens (stride 16) give the 4 pseudo-tasks enough features.
PSEUDO_SOURCE_OVERRIDES: dict[str, dict[str, Any]] = {
    "SquadTask": {"max_length": 64, "stride": 16, "max_query_length": 16}
}


def resolve_references(value: Any, folder: Path) -> Any:
    """A config value with its file references (strings naming a .yaml file of `folder`, as jsonargparse reads
    them: a list, a class_path/init_args entry) replaced by their content, recursively."""
    import yaml

    if isinstance(value, str) and value.endswith(".yaml") and (folder / value).is_file():
        return resolve_references(yaml.safe_load((folder / value).read_text()), folder)
    if isinstance(value, dict):
        return {k: resolve_references(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_references(v, folder) for v in value]
    return value


def fixture_embedding(batch: dict[str, Any]) -> Any:
    """Pseudo-task embedding of the fixtures' features without an encoder: (mean token id, length) per feature,
    distinct for distinct features (`embed_fn` of the PseudoTask entries in the offline table runs)."""
    import torch

    mask = batch["attention_mask"].float()
    ids = batch["input_ids"].float() * mask
    return torch.stack([ids.sum(1) / mask.sum(1), mask.sum(1)], dim=1)


def _files_for(class_path: str, init_args: dict[str, Any], directory: Path) -> dict[str, Any]:
    """The fixture files (and json field) standing in for the hub data of one task of a table config."""
    kind = class_path.rsplit(".", 1)[-1]
    language = init_args.get("language")
    if kind == "TyDiQATask":
        return {"data_files": write_tydiqa(directory / "tydiqa")}
    if kind == "SquadTask":
        return {"data_files": write_squad(directory / "squad"), "data_field": "data"}
    if kind == "MLQATask":
        return {"data_files": write_mlqa(directory / "mlqa", language)}
    if kind == "WikiANNTask":
        return {"data_files": write_wikiann(directory / "wikiann", language)}
    if kind == "MNLITask":
        return {"data_files": write_mnli(directory / "mnli")}
    if kind == "XNLITask":
        return {"data_files": write_xnli(directory / "xnli", language)}
    if kind == "GlueTask":
        return {"data_files": write_glue(directory / "glue", init_args["task"])}
    raise ValueError(f"no fixture for {class_path}")


def offline_data_config(table: str, data_yaml: str, directory: Path, tokenizer: str) -> Path:
    """configs/<table>/<data_yaml> with every task pointed at fixture files, the tiny tokenizer and a cache
    under `directory` (everything else, task list included, as in the table's config)."""
    import yaml

    config = resolve_references(yaml.safe_load((CONFIGS / table / data_yaml).read_text()), CONFIGS / table)
    written: dict[str, dict[str, Any]] = {}

    def offline(entry: dict[str, Any]) -> dict[str, Any]:
        init_args = dict(entry["init_args"])
        key = f"{entry['class_path']}:{init_args.get('language') or init_args.get('task')}"
        if key not in written:
            written[key] = _files_for(entry["class_path"], init_args, directory / "data")
        init_args.update(written[key])
        init_args.update(tokenizer=tokenizer, cache_dir=str(directory / "hf_cache"))
        return {**entry, "init_args": init_args}

    for entry in config.get("tasks", []) + (config.get("zero_shot_tasks") or []):
        if entry["class_path"] == PSEUDO_TASK:  # the source offline; clustered without a pretrained encoder
            source = offline(entry["init_args"]["source"])
            source["init_args"].update(PSEUDO_SOURCE_OVERRIDES.get(source["class_path"].rsplit(".", 1)[-1], {}))
            entry["init_args"] = {
                **entry["init_args"],
                "source": source,
                "encoder": None,
                "embed_fn": f"{__name__}.fixture_embedding",
                "cache_dir": str(directory / "pseudo_tasks"),
            }
        else:
            entry.update(offline(entry))
    out = directory / f"{table}{data_yaml}"
    out.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return out


def offline_model_config(table: str, directory: Path, vocab_size: int) -> Path:
    """configs/<table>/_model.yaml with the pretrained backbone replaced by a tiny random BERT."""
    import yaml

    config = yaml.safe_load((CONFIGS / table / "_model.yaml").read_text())
    config["init_args"].update(backbone=None, config=tiny_bert_config(vocab_size, max_positions=512))
    out = directory / f"{table}_model.yaml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def table_run_args(
    table: str, method: str, directory: Path, data_yaml: str = "_data.yaml", steps: int = 3, val_every: int = 2
) -> list[str]:
    """CLI arguments for a few steps of configs/<table>/<method>.yaml on the fixtures (CPU, tiny model):
    data and model replaced as above, K = 2 for the Reptile family, validation and checkpoints every
    `val_every` steps."""
    tokenizer = build_tokenizer(directory / "tokenizer")
    from transformers import AutoTokenizer

    vocab_size = len(AutoTokenizer.from_pretrained(tokenizer))
    args = [
        f"--config={CONFIGS / table / f'{method}.yaml'}",
        f"--data={offline_data_config(table, data_yaml, directory, tokenizer)}",
        f"--model.model={offline_model_config(table, directory, vocab_size)}",
        "--trainer.accelerator=cpu",
        f"--trainer.max_steps={steps}",
        f"--trainer.val_check_interval={val_every}",
        f"--checkpoint.every_n_train_steps={val_every}",
        "--trainer.log_every_n_steps=1",
        "--trainer.num_sanity_val_steps=0",
    ]
    if "reptile" in method:
        args.append("--model.algorithm.init_args.inner_steps=2")
    return args


@functools.cache
def _class_parser(cls: type) -> Any:
    """A jsonargparse parser of `cls`'s arguments (built once per class: resolving `**kwargs` chains is slow)."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls)
    return parser


def _bind(entry: dict[str, Any], partial: bool = False) -> Any:
    """Import `class_path` and bind `init_args` to its signature (the check jsonargparse would make)."""
    import importlib
    import inspect

    module, name = entry["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    signature = inspect.signature(cls)
    init_args = entry.get("init_args") or {}
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        # `**kwargs` forwarded to a base: the parameters jsonargparse resolves through the chain.
        _class_parser(cls).parse_object(init_args)
    else:
        signature.bind_partial(**init_args) if partial else signature.bind(**init_args)
    return cls


def table_configs(table: str) -> dict[str, dict[str, Any]]:
    """Every method config of configs/<table>/ with its shared pieces read in (file references resolved), after
    checking that each class it names exists and accepts its arguments (no instantiation, so no hub access)."""
    import inspect

    import yaml
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from datamodules.multitask import MultiTaskDataModule

    folder = CONFIGS / table

    def load(value: Any) -> Any:
        return (
            yaml.safe_load((folder / value).read_text())
            if isinstance(value, str) and value.endswith(".yaml")
            else value
        )

    configs = {}
    for path in sorted(folder.glob("[!_]*.yaml")):
        raw = yaml.safe_load(path.read_text())
        config = {key: load(value) for key, value in raw.items()}
        config["model"] = {key: load(value) for key, value in raw["model"].items()}
        config["data"] = data = resolve_references(config["data"], folder)
        for task in data["tasks"] + (data.get("zero_shot_tasks") or []):
            _bind(task)
            if task["class_path"] == PSEUDO_TASK:
                _bind(task["init_args"]["source"])
        inspect.signature(MultiTaskDataModule).bind(**{**data, "tasks": [], "zero_shot_tasks": []})
        _bind(config["model"]["model"])
        _bind(config["model"]["algorithm"])
        _bind(config["optimizer"], partial=True)  # `params` comes from the model
        trainer = dict(config["trainer"])
        for callback in trainer.pop("callbacks", []):
            _bind(callback)
        inspect.signature(Trainer).bind(**trainer)
        inspect.signature(ModelCheckpoint).bind(**config["checkpoint"])
        configs[path.stem] = config
    return configs


def check_pseudo_tasks(tasks: list[dict[str, Any]], source: Any, name: str) -> None:
    """Paper §4.3: k = 4 PseudoTask entries, clusters 0-3, one source, embedded by pretrained mBERT, PCA to 50
    dimensions, the same clustering seed and cache (so the four entries share one assignment)."""
    assert [t["class_path"] for t in tasks] == [PSEUDO_TASK] * 4, name
    assert [t["init_args"]["cluster"] for t in tasks] == [0, 1, 2, 3], name
    shared = [{k: v for k, v in t["init_args"].items() if k != "cluster"} for t in tasks]
    assert all(s == shared[0] for s in shared), name
    assert shared[0]["source"] == source, name
    assert (shared[0]["k"], shared[0]["pca_dim"], shared[0]["encoder"]) == (4, 50, "bert-base-multilingual-cased"), name


def _paper_tables() -> Any:
    """scripts/paper_tables.py, the paper's published tables (scripts/ is not a package)."""
    import sys

    scripts = str(CONFIGS.parent / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    import paper_tables

    return paper_tables


def check_paper_hyperparameters(experiment: str, configs: dict[str, dict[str, Any]], batch_size: int) -> None:
    """What the paper fixes for every text table: a config for each method of its tables (configs/<experiment>),
    AdamW lr 3e-5; MTL-family baselines draw min(8, T) tasks with q = 1/5; Sequential Reptile K = 1000, η = 0.1
    (and q = 1/5), and Reptile K = 1000 / T per task (an outer update per ~1000 batches, as Sequential Reptile's:
    our choice, the paper gives none); every task's batch size. On pseudo-tasks (§4.3, Tables 4-5): the MTL family
    (and SWEP) draws all k tasks every step and Sequential Reptile p_t = 1/k (q = 0)."""
    from lightning_modules.algorithms import registry

    plain, labels = registry.plain_keys(), registry.labels()
    tables = [t for t in _paper_tables().TABLES.values() if t.experiment == experiment]
    assert tables, f"no paper table has its runs in configs/{experiment}"
    for table in tables:  # squad_mtl -> mtl, for the configs of this table's prefix
        stems = {plain[labels[name]] for name in configs if name.startswith(table.method_prefix)}
        missing = set(table.rows) - stems
        assert not missing, f"{table.key}: missing method configs {sorted(missing)}"
    for name, config in configs.items():
        optimizer = config["optimizer"]
        assert optimizer["class_path"] == "torch.optim.AdamW" and optimizer["init_args"]["lr"] == 3e-5, name
        tasks = config["data"]["tasks"]
        pseudo = all(t["class_path"] == PSEUDO_TASK for t in tasks)
        sources = [t["init_args"]["source"] if pseudo else t for t in tasks]
        assert all(t["init_args"]["batch_size"] == batch_size for t in sources), name
        q = 0.0 if pseudo else 0.2
        args = config["model"]["algorithm"]["init_args"]
        if "tasks_per_step" in args:
            assert args["tasks_per_step"] == min(8, len(tasks)) and args["q"] == q, name
        else:  # Reptile's outer update takes K steps on each of T tasks
            reptile = config["model"]["algorithm"]["class_path"].endswith(".Reptile")
            assert args["inner_steps"] == (round(1000 / len(tasks)) if reptile else 1000), name
            assert args["outer_lr"] == 0.1 and args.get("q", q) == q, name
