"""Benchmarking: semantic-segmentation metrics, the benchmark runner and its reports."""

from samadapter.eval.benchmark import (
    BenchmarkResult,
    Method,
    gt_segments,
    oracle_classifier,
    run_benchmark,
    score_predictions,
)
from samadapter.eval.metrics import ConfusionMatrix, SegMetrics, confusion_matrix
from samadapter.eval.report import write_reports

__all__ = [
    "BenchmarkResult",
    "ConfusionMatrix",
    "Method",
    "SegMetrics",
    "confusion_matrix",
    "gt_segments",
    "oracle_classifier",
    "run_benchmark",
    "score_predictions",
    "write_reports",
]
