"""Datasets with semantic ground truth: ADE20K (150 / 847), COCO-Stuff, COCO panoptic, any
labelled folder."""
