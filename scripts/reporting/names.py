"""What a run's method is called and where it sorts: the registry's labels and paper order for the config the run
was named after."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from lightning_modules.algorithms import registry

# configs/mlqa names its configs <source>_<method> (Table 3: tydiqa_*, Table 4: squad_*).
SOURCE_PREFIXES = ("squad_", "tydiqa_")


def base_method(method: str) -> str:
    """squad_mtl -> mtl (configs/mlqa's source prefix off)."""
    prefix = next((p for p in SOURCE_PREFIXES if method.startswith(p)), "")
    return method[len(prefix) :]


def method_label(method: str) -> str:
    """The label of the config a run was named after (registry: any experiment's config of that name, else of
    the name without its source prefix), else the name itself."""
    labels = registry.labels()
    return labels.get(method) or labels.get(base_method(method)) or method


def method_key(method: str) -> tuple[int, str]:
    """The paper's row order (registry.order), then the config name."""
    return registry.order(method_label(method), method)


def display_names(methods: Iterable[str]) -> dict[str, str]:
    """The paper's names (MTL, Seq. Reptile); the config name is added where two would read the same."""
    names = {m: method_label(m) for m in methods}
    counts = defaultdict(int)
    for name in names.values():
        counts[name] += 1
    return {m: f"{n} ({m})" if counts[n] > 1 else n for m, n in names.items()}
