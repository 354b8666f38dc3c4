"""Batch runs over many images (:mod:`.inputs`, :mod:`.options`, :mod:`.records`, :mod:`.runner`).

The public names of the submodules are re-exported here: ``from samadapter.batch import X``.
"""

from samadapter.batch.inputs import InputImage, collect_inputs
from samadapter.batch.options import BatchOptions, PostProcess, check_outputs, image_outputs
from samadapter.batch.records import (
    STATUSES,
    BatchSummary,
    ImageRecord,
    describe_failure,
    fingerprint_of,
    identity_of,
    inputs_of_run,
    load_run,
    merge_coco,
    models_record,
    relabel_settings,
    run_config,
    write_records,
)
from samadapter.batch.runner import BatchRunner, ClassifyRunner, RelabelRunner, Terminated
from samadapter.config import fingerprint as settings_fingerprint

__all__ = [
    "STATUSES",
    "BatchOptions",
    "BatchRunner",
    "BatchSummary",
    "ClassifyRunner",
    "ImageRecord",
    "InputImage",
    "PostProcess",
    "RelabelRunner",
    "Terminated",
    "check_outputs",
    "collect_inputs",
    "describe_failure",
    "fingerprint_of",
    "identity_of",
    "image_outputs",
    "inputs_of_run",
    "load_run",
    "merge_coco",
    "models_record",
    "relabel_settings",
    "run_config",
    "settings_fingerprint",
    "write_records",
]
