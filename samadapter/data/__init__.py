"""Datasets with semantic ground truth (ADE20K layouts, any labelled folder)."""
