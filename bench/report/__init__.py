"""The report stage: from the answers frame to the paper's tables, fronts, figures and a self-contained report.

Entry points: ``build_report`` writes ``<result>/report/``; ``recompute_check`` re-derives the stored numbers.
"""

from bench.report.build import ReportPaths, build_report
from bench.report.numbers import recompute_check

__all__ = ["ReportPaths", "build_report", "recompute_check"]
