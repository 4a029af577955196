"""scikit-learn's TfidfVectorizer as the reference for `bench.scoring.truthfulqa.tfidf_cosine` (docs/scoring.md)."""

from __future__ import annotations

from typing import Iterable

import pytest

from bench.scoring.truthfulqa import tfidf_cosine


def sklearn_cosine(answer: str, choice: str) -> float:
    """Fit the default vectorizer on just the two texts (what the authors did per pair); rows come l2-normalised,
    so their dot product is the cosine. No token at all: scikit-learn refuses (empty vocabulary), we say 0."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        matrix = TfidfVectorizer().fit_transform([answer, choice])
    except ValueError:
        return 0.0
    return float(matrix[0].multiply(matrix[1]).sum())


def assert_matches_sklearn(pairs: Iterable[tuple[str, str]]) -> None:
    for answer, choice in pairs:
        expected = sklearn_cosine(answer, choice)
        assert tfidf_cosine(answer, choice) == pytest.approx(expected, abs=1e-12), (answer, choice)
