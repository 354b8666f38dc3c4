"""Batch runs over many images (:mod:`.inputs`, :mod:`.options`, :mod:`.records`, :mod:`.runner`).

The public names the commands use are re-exported here: ``from samadapter.batch import X``.
"""

from samadapter.batch.inputs import InputImage, collect_inputs
from samadapter.batch.options import BatchOptions, PostProcess, check_outputs
from samadapter.batch.records import (
    BatchSummary,
    ImageRecord,
    describe_failure,
    inputs_of_run,
    load_run,
    models_record,
    relabel_settings,
    run_config,
)
from samadapter.batch.runner import BatchRunner, ClassifyRunner, RelabelRunner, Terminated

__all__ = [
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
    "inputs_of_run",
    "load_run",
    "models_record",
    "relabel_settings",
    "run_config",
]
