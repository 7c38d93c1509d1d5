"""PAN-X (WikiANN) as XTREME distributes it: CoNLL-style text, one `token<TAB>tag` line per word, sentences
separated by blank lines, IOB2 tags. XTREME's `{split}-{lang}.tsv` files (after its panx_preprocess) have bare
tokens; the raw PAN-X files (`{lang}/train`, `dev`, `test`) prefix each token with its language (`en:Obama`).

The files are read by the `datasets` text builder with `sample_by="paragraph"` (one row per blank-line-separated
block) and each block is turned into a row of the hub schema: tokens, ner_tags (ids of the tag names), langs
(from the prefix when every line of the sentence has one, else the task's language).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CONLL_OPTIONS: dict[str, Any] = {"sample_by": "paragraph"}
# A language prefix of raw PAN-X: "en:", "zh-yue:", "bat-smg:" (letters, hyphenated parts).
_PREFIX = re.compile(r"^([a-z]{2,3}(?:-[a-z]+)*):(.+)$")


@dataclass(frozen=True)
class ConllSentences:
    """`Dataset.map` function (batched): text blocks -> rows of tokens, ner_tags, langs. Frozen, so that
    `datasets` fingerprints it by its fields. `source` names the files in messages."""

    tags: tuple[str, ...]
    language: str
    source: str

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids = {tag: i for i, tag in enumerate(self.tags)}
        out: dict[str, list[Any]] = {"tokens": [], "ner_tags": [], "langs": []}
        for block in batch["text"]:
            for lines in _sentences(block):
                words, tags = zip(*(self._fields(line) for line in lines))
                unknown = sorted({t for t in tags if t not in ids})
                if unknown:
                    raise ValueError(
                        f"{self.source}: unknown NER tag(s) {unknown} (sentence {' '.join(words)!r}); the tags are "
                        f"IOB2 {' '.join(self.tags)}: map the others to these or drop their sentences"
                    )
                prefixed = [_PREFIX.match(w) for w in words]
                if all(prefixed):
                    langs = [m.group(1) for m in prefixed]  # type: ignore[union-attr]
                    words = tuple(m.group(2) for m in prefixed)  # type: ignore[union-attr]
                else:
                    langs = [self.language] * len(words)
                out["tokens"].append(list(words))
                out["ner_tags"].append([ids[t] for t in tags])
                out["langs"].append(langs)
        return out

    def _fields(self, line: str) -> tuple[str, str]:
        """`token<TAB>tag` (or, failing a tab, the last whitespace-separated field as the tag)."""
        word, tab, tag = line.rpartition("\t")
        if not tab:
            parts = line.rsplit(None, 1)
            if len(parts) != 2:
                raise ValueError(
                    f"{self.source}: line {line!r} has no tag; PAN-X lines are token<TAB>tag (a file whose tags "
                    "were removed, such as an unlabelled test file, cannot be trained or scored on)"
                )
            word, tag = parts
        return word.strip(), tag.strip()


def _sentences(block: str) -> list[list[str]]:
    """A text block -> its sentences' lines (lines of only whitespace also separate sentences)."""
    sentences: list[list[str]] = [[]]
    for line in block.split("\n"):
        if line.strip():
            sentences[-1].append(line.rstrip("\r"))
        elif sentences[-1]:
            sentences.append([])
    return [s for s in sentences if s]
