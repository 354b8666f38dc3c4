"""Benchmarking: semantic-segmentation metrics, the benchmark runner and its reports."""
