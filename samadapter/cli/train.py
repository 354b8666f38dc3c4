"""``samadapter train``: fine-tune the Mask-Adapter on your labels (ground-truth warm-up, then
mixed-mask training on SAM's proposals), CLIP frozen and its features cached."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import time
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from samadapter import registry
from samadapter.cli import choices
from samadapter.cli.common import command, console, print_error
from samadapter.cli.options import (
    CONFIG_FLAGS,
    MODEL_PANEL,
    Device,
    Flag,
    check_files,
    choice,
    flag,
    flag_group,
)
from samadapter.config import AmgSettings
from samadapter.errors import ConfigError, OutputError
from samadapter.train.config import (
    REGION_MODES,
    SCHEDULES,
    STAGES,
    DataSettings,
    FeatureSettings,
    ModelSettings,
    RegionSettings,
    RunSettings,
    TrainConfig,
    TrainRunConfig,
)
from samadapter.weights import default_weights_dir

if TYPE_CHECKING:  # torch and the training modules load inside the command: --help stays instant
    from samadapter.data.base import SemanticDataset
    from samadapter.data.synthetic import SyntheticClass
    from samadapter.train.features import TrainingFeatures

DATA_PANEL = "Data"
OPTIM_PANEL = "Optimisation (defaults: the paper's)"
LOSS_PANEL = "Masks and losses"
SAM_PANEL = "SAM proposals (stage mixed)"
RUN_PANEL = "Run, logs and checkpoints"


def open_training_dataset(
    name: str,
    root: Path | None,
    split: str | None,
    *,
    classes_file: Path | None = None,
    ignore_index: int | None = 255,
    label_offset: int = 0,
    synthetic_images: int = 64,
    synthetic_classes: tuple[SyntheticClass, ...] | None = None,
) -> SemanticDataset:
    """The dataset ``train`` reads: :func:`samadapter.data.factory.open_dataset` after the checks
    that name ``train``'s flags (``--data-root``, ``--classes-file``).

    Args:
        name: one of :data:`samadapter.data.factory.DATASETS` (``--dataset``).
        root: the dataset folder (``--data-root``; see ``open_dataset``).
        split: ``training`` / ``train``, ``validation`` / ``val`` ... (``None``: training);
            COCO: ``train2017`` / ``train``, ``val2017`` / ``val``.
        classes_file: the class list of a ``folder`` dataset (ids as in the label maps).
        ignore_index: ``folder`` label value that counts for nothing.
        label_offset: ``folder``: class id = pixel value + offset.
        synthetic_images: images of the synthetic training split (held-out splits get a quarter,
            at least 8).
        synthetic_classes: the synthetic classes (default: coloured / textured shapes).

    Returns:
        a :class:`~samadapter.data.base.SemanticDataset`.

    Raises:
        ConfigError / DatasetError: unknown dataset or split, missing or differently laid out
            data (the message says what was expected).
    """
    from samadapter.data.factory import open_dataset
    from samadapter.vocab import read_classes_file

    check_dataset_flags(name, root, classes_file)
    return open_dataset(
        name,
        root,
        split,
        vocab=read_classes_file(classes_file) if classes_file is not None else None,
        ignore_index=ignore_index,
        label_offset=label_offset,
        synthetic_images=synthetic_images,
        synthetic_classes=synthetic_classes,
    )


def check_dataset_flags(name: str, root: Path | None, classes_file: Path | None) -> None:
    """Refuse, naming ``train``'s flags, a dataset name or a missing folder or class list
    before any model loads."""
    from samadapter.data.factory import DATASETS

    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'", hint=f"use one of {', '.join(DATASETS)}")
    if name != "synthetic" and root is None:
        raise ConfigError(f"--dataset {name} needs --data-root", hint="give the dataset folder")
    if name == "folder" and classes_file is None:
        raise ConfigError(
            "--dataset folder needs --classes-file",
            hint="one class per line, or ID:name lines as in the official lists",
        )


def default_cache_dir(dataset: str, root: Path | None, split: str | None, extra: str = "") -> Path:
    """``$SAMADAPTER_HOME/train-cache/<dataset>-<digest of root, split, extra>``."""
    where = str(root.resolve()) if root is not None else ""
    digest = hashlib.sha256(f"{dataset}\0{where}\0{split}\0{extra}".encode()).hexdigest()[:10]
    return default_weights_dir() / "train-cache" / f"{dataset}-{split or 'train'}-{digest}"


REQUIRED = inspect.Parameter.empty
_data, _optim, _loss, _sam, _run, _model = (
    functools.partial(flag, panel=panel)
    for panel in (DATA_PANEL, OPTIM_PANEL, LOSS_PANEL, SAM_PANEL, RUN_PANEL, MODEL_PANEL)
)
Stage = choice("Stage", STAGES)
Schedule = choice("Schedule", SCHEDULES)
Regions = choice("Regions", REGION_MODES)
_AMG = ModelSettings().amg  # training's SAM settings

TRAIN_FLAGS: dict[str, Flag] = {
    "dataset": _data(
        str,
        REQUIRED,
        help="Training data: ade20k-150 / ade20k-847 (--data-root holding "
        "ADEChallengeData2016 / ADE20K_2021_17_01), coco-stuff / coco-panoptic (--data-root "
        "holding detectron2's coco/: train2017/, stuffthingmaps_detectron2/ or "
        "panoptic_train2017/ + annotations/; --split train2017 or val2017), folder "
        "(--data-root with images/ and labels/, --classes-file), synthetic (coloured "
        "shapes, for smoke tests).",
    ),
    "output": _run(
        Path,
        REQUIRED,
        "--output",
        "-o",
        help="Run folder: checkpoints, logs, config.json, classes.txt.",
    ),
    "stage": flag(
        Stage,
        Stage(TrainConfig.stage),
        help="warmup: ground-truth masks only; mixed: GT + SAM masks matched to GT (start it "
        "from the warmup run's model_final.pth with --adapter-checkpoint).",
    ),
    "data_root": _data(Path | None, help="Dataset folder."),
    "split": _data(str | None, help="Training split. [default: the dataset's]"),
    "classes_file": _data(
        Path | None,
        help="--dataset folder: the class list (one per line, or ID:name,synonym lines).",
    ),
    "ignore_index": _data(
        int, DataSettings.ignore_index, help="--dataset folder: label value to ignore."
    ),
    "label_offset": _data(
        int, DataSettings.label_offset, help="--dataset folder: class id = pixel value + offset."
    ),
    "val_split": _data(
        str | None,
        help="Held-out split for periodic validation (synthetic: val). [default: none]",
    ),
    "val_images": _data(
        int,
        DataSettings.val_images,
        min=0,
        help="Validate on the first N held-out images (0: all).",
    ),
    "synthetic_images": _data(
        int,
        DataSettings.synthetic_images,
        min=1,
        help="Images of --dataset synthetic's training split.",
    ),
    "regions": _loss(
        Regions,
        Regions(RegionSettings.mode),
        help="Ground-truth masks: one per connected class region, or one per class. "
        "Instances, when the dataset has them, are one mask each.",
    ),
    "min_region_area": _loss(
        int,
        RegionSettings.min_area,
        min=1,
        help="Drop ground-truth regions smaller than this (pixels).",
    ),
    "clip": _model(
        str | None,
        metavar="NAME",
        autocompletion=choices.completer(choices.clip_names, tests=True),
        help="CLIP: convnext_large_d_320, convnext_base_w_320 or tiny-random (tests). "
        "[default: the adapter's, else convnext_large_d_320]",
    ),
    "clip_checkpoint": _model(Path | None, help="open_clip weights file."),
    "adapter": _model(
        str | None,
        metavar="NAME",
        autocompletion=choices.completer(choices.adapter_names),
        help="Start from a registry adapter (fcclip_convnext_large, maftp_convnext_large, "
        "maftp_convnext_base, demo). [default: a new adapter]",
    ),
    "adapter_checkpoint": _model(
        Path | None,
        help="Start from this adapter file (official layouts, or a train run's .pth).",
    ),
    "from_scratch": _model(
        bool, False, help="Re-initialise the adapter (keep only the CLIP weights of --adapter*)."
    ),
    "save_clip": _model(
        bool | None,
        None,
        "--save-clip/--no-save-clip",
        help="Store the CLIP weights in each checkpoint (backbone.clip_model.*). [default: "
        "when CLIP did not come from a separate file]",
    ),
    "weights_dir": CONFIG_FLAGS["weights_dir"],
    "offline": CONFIG_FLAGS["offline"],
    "clip_size": _model(
        int,
        FeatureSettings.clip_size,
        min=32,
        help="CLIP input size S, resized as segment's --clip-size: short side to S, long side "
        "capped at S (paper: 896).",
    ),
    "steps": _optim(int, TrainConfig.steps, min=1, help="Optimiser steps."),
    "batch_size": _optim(int, TrainConfig.batch_size, min=1, help="Images per step."),
    "lr": _optim(float, TrainConfig.lr, min=0.0, help="Peak learning rate (AdamW)."),
    "weight_decay": _optim(float, TrainConfig.weight_decay, min=0.0, help="AdamW weight decay."),
    "grad_clip": _optim(float, TrainConfig.grad_clip, help="Gradient-norm clip (0: none)."),
    "schedule": _optim(Schedule, Schedule(TrainConfig.schedule), help="Decay after the warm-up."),
    "warmup_steps": _optim(
        int, TrainConfig.warmup_steps, min=0, help="Linear learning-rate warm-up steps."
    ),
    "seed": _optim(int, TrainConfig.seed, help="Seeds every random choice."),
    "max_masks": _loss(
        int, TrainConfig.max_masks, min=1, help="Masks per image (warmup: GT; mixed: all)."
    ),
    "max_pairs": _loss(
        int, TrainConfig.max_pairs, min=0, help="Most SAM/GT pairs per image (mixed)."
    ),
    "iou_thresh": _loss(
        float,
        TrainConfig.iou_thresh,
        min=0.0,
        max=0.999,
        help="IoU a SAM mask must exceed to pair with a GT mask (mixed).",
    ),
    "ce_weight": _loss(
        float | None, min=0.0, help="Cross-entropy weight. [default: 1.0 warmup, 2.0 mixed]"
    ),
    "consistency_weight": _loss(
        float, TrainConfig.consistency_weight, min=0.0, help="Consistency-loss weight (mixed)."
    ),
    "sam": _sam(
        str,
        ModelSettings.sam,
        metavar="[vit_b|vit_l|vit_h]",
        autocompletion=choices.completer(lambda: ["vit_b", "vit_l", "vit_h"], tests=True),
        help="SAM model (tiny-random: tests).",
    ),
    "sam_checkpoint": _sam(Path | None, help="SAM .pth file."),
    "points_per_side": _sam(int, _AMG.points_per_side, min=1, help="SAM prompt grid per side."),
    "pred_iou_thresh": _sam(
        float, _AMG.pred_iou_thresh, min=0.0, max=1.0, help="SAM predicted-IoU filter."
    ),
    "stability_score_thresh": _sam(
        float, _AMG.stability_score_thresh, min=0.0, max=1.0, help="SAM stability filter."
    ),
    "box_nms_thresh": _sam(
        float, _AMG.box_nms_thresh, min=0.0, max=1.0, help="SAM box NMS threshold."
    ),
    "min_mask_region_area": _sam(
        int, _AMG.min_mask_region_area, min=0, help="SAM small-region clean-up (pixels)."
    ),
    "cache_dir": _run(
        Path | None,
        help="Feature cache folder (CLIP features float16, SAM masks, GT masks). [default: "
        "$SAMADAPTER_HOME/train-cache/<dataset>-<split>-<hash>]",
    ),
    "no_cache": _run(
        bool,
        False,
        "--no-cache",
        help="Recompute CLIP features (and SAM masks) every step: slow; for comparison.",
    ),
    "cache_in_memory": _run(
        bool, False, help="Also keep the cached items in RAM (small datasets)."
    ),
    "resume": _run(
        bool,
        False,
        help="Continue the run in --output from its last checkpoint (model, optimiser, "
        "schedule, step, RNG), with the same flags.",
    ),
    "log_every": _run(int, TrainConfig.log_every, min=1, help="Steps between log records."),
    "checkpoint_every": _run(
        int, TrainConfig.checkpoint_every, min=0, help="Steps between checkpoints (0: at the end)."
    ),
    "keep_checkpoints": _run(
        int, TrainConfig.keep_checkpoints, min=0, help="Periodic checkpoints kept (0: all)."
    ),
    "val_every": _run(
        int | None,
        min=0,
        help="Steps between validations (0: at the end). [default: --checkpoint-every]",
    ),
    "tensorboard": _run(
        bool | None,
        None,
        "--tensorboard/--no-tensorboard",
        help="TensorBoard logs in OUTPUT/tensorboard. [default: when installed]",
    ),
    "device": _run(Device, Device(ModelSettings.device), help="Where to train."),
    "amp": _run(bool, TrainConfig.amp, help="bfloat16 autocast on CUDA."),
    "threads": _run(int | None, min=1, help="CPU threads for torch."),
    "quiet": _run(bool, False, "--quiet", "-q", help="Print errors and the final line only."),
}
"""``train``'s flags, by the name of the setting each one sets (:func:`run_config`), in the
order ``--help`` lists them; defaults are the settings' own."""


def run_config(**flags: Any) -> TrainRunConfig:
    """``train``'s configuration: each flag sets the field of its name in one section of
    :class:`~samadapter.train.config.TrainRunConfig` (an enum gives its value); ``--regions``
    and ``--min-region-area`` make the :class:`~samadapter.train.config.RegionSettings`,
    ``--max-masks`` is the masks per image of both stages.

    Raises:
        ConfigError: a setting the configuration refuses.
        TypeError: a flag no section has a field for (a programming error).
    """
    left = {k: v.value if isinstance(v, Enum) else v for k, v in flags.items()}

    def section(cls: type[Any], **given: Any) -> Any:
        names = [f.name for f in dataclasses.fields(cls) if f.name in left and f.name not in given]
        return cls(**{name: left.pop(name) for name in names}, **given)

    regions = RegionSettings(mode=left.pop("regions"), min_area=left.pop("min_region_area"))
    config = TrainRunConfig(
        data=section(DataSettings, regions=regions),
        models=section(ModelSettings, amg=section(AmgSettings)),
        features=section(FeatureSettings),
        train=section(TrainConfig, max_gt_masks=left["max_masks"]),
        run=section(RunSettings),
    )
    if left:
        raise TypeError(f"train flags without a setting: {', '.join(left)}")
    return config


@command
@flag_group("config", TRAIN_FLAGS, run_config)
def train(*, config: TrainRunConfig) -> int:
    """Train the Mask-Adapter on a dataset's labels, CLIP frozen.

    Stage warmup feeds up to 32 ground-truth masks per image (cross-entropy over the classes
    plus void); stage mixed adds SAM's masks matched to ground truth (IoU > 0.7, <= 8 pairs;
    16 GT + 8 SAM + 8 matched GT, CE x2 + consistency x5). CLIP features and SAM masks are
    computed once per image and cached. Writes OUTPUT/model_final.pth (official detectron2
    layout; load with `segment --adapter-checkpoint`), model_final_demo.pth (demo layout),
    periodic model_<step>.pth, training_state.pth (--resume), log.jsonl, train_log.csv.

    Example: samadapter train --dataset synthetic --clip tiny-random --clip-size 128 --steps 300
    --output runs/smoke
    """
    try:
        _train(config)
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    return 0


def _train(config: TrainRunConfig) -> None:
    """Check the options, build models and data, and train (``config.run.resume``: continue)."""
    import torch

    from samadapter.data.synthetic import DEFAULT_CLASSES
    from samadapter.pipeline import resolve_device
    from samadapter.train.checkpoints import FINAL_STEM, STATE_FILE
    from samadapter.train.features import TrainingFeatures
    from samadapter.train.loop import Trainer
    from samadapter.train.setup import build_proposer, build_training_models
    from samadapter.train.synthetic import calibrated_classes

    data, m, feat, run = config.data, config.models, config.features, config.run
    dataset, output, quiet = data.dataset, run.output, run.quiet
    check_files(m.clip_checkpoint, m.adapter_checkpoint, m.sam_checkpoint)
    has_state = (output / STATE_FILE).is_file()
    if run.resume and not has_state:
        raise OutputError(
            f"nothing to resume in {output}: no {STATE_FILE}",
            hint="drop --resume to start a new run",
        )
    if not run.resume and has_state:
        raise OutputError(
            f"{output} holds a training run already",
            hint="add --resume to continue it, or choose another --output",
        )
    dev = resolve_device(m.device)
    if run.threads:
        torch.set_num_threads(run.threads)
    torch.manual_seed(config.train.seed)
    val_split = "val" if dataset == "synthetic" and data.val_split is None else data.val_split

    def open_splits(
        synthetic_classes: tuple[SyntheticClass, ...] | None = None,
    ) -> tuple[SemanticDataset, SemanticDataset | None]:
        def open_split(split: str | None) -> SemanticDataset:
            return open_training_dataset(
                dataset,
                data.data_root,
                split,
                classes_file=data.classes_file,
                ignore_index=data.ignore_index,
                label_offset=data.label_offset,
                synthetic_images=data.synthetic_images,
                synthetic_classes=synthetic_classes,
            )

        return open_split(data.split), open_split(val_split) if val_split is not None else None

    # The data first: a missing folder, class list or split is refused before any model loads.
    train_ds, val_ds = open_splits()
    t0 = time.perf_counter()
    models = build_training_models(
        clip=m.clip,
        adapter=m.adapter,
        adapter_checkpoint=m.adapter_checkpoint,
        clip_checkpoint=m.clip_checkpoint,
        weights_dir=m.weights_dir,
        offline=m.offline,
        from_scratch=m.from_scratch,
        seed=config.train.seed,
        progress=not quiet,
    )
    clip_size = feat.clip_size
    synthetic_classes = None
    if dataset == "synthetic" and registry.get("clip", models.clip_name).random:
        # A random CLIP knows no colours: pick colours it can tell apart by the class names.
        synthetic_classes = calibrated_classes(
            models.backbone, [c.name for c in DEFAULT_CLASSES], clip_size=min(clip_size, 256)
        )
        train_ds, val_ds = open_splits(synthetic_classes)
    proposer, proposer_key = None, ""
    if config.train.stage == "mixed":
        proposer, proposer_key = build_proposer(m, not quiet, dev)
    extra = f"{data.synthetic_images}:{synthetic_classes}" if dataset == "synthetic" else ""

    def features(ds: SemanticDataset, split_name: str | None, val: bool) -> TrainingFeatures:
        folder = None
        if not feat.no_cache and feat.cache_dir is not None:
            folder = feat.cache_dir / (split_name or "train")
        elif not feat.no_cache:
            folder = default_cache_dir(dataset, data.data_root, split_name, extra)
        return TrainingFeatures(
            ds,
            models.backbone.to(dev),
            clip_size=clip_size,
            device=dev,
            cache_dir=folder,
            proposer=None if val else proposer,  # validation: ground-truth masks only
            proposer_key=proposer_key,
            regions=data.regions,
            in_memory=feat.cache_in_memory,
            limit=data.val_images if val else 0,
        )

    train_data = features(train_ds, data.split, val=False)
    val_data = features(val_ds, val_split, val=True) if val_ds is not None else None
    if not quiet:
        console.print(
            f"{escape(models.source)}; {len(train_ds)} training images"
            + (f", {len(val_data)} held-out" if val_data is not None else "")
            + f", {len(train_ds.vocab)} classes; device {dev}"
        )
    if not feat.no_cache:
        for name, prepared in (("train", train_data), ("held-out", val_data)):
            if prepared is not None:
                _prepare(prepared, f"caching {name} features", quiet)
    save_clip = run.save_clip
    trainer = Trainer(
        models.backbone,
        models.adapter,
        train_data,
        config.train,
        output,
        val_data=val_data,
        device=dev,
        clip_state_in_checkpoints=models.clip_in_checkpoints if save_clip is None else save_clip,
        tensorboard=run.tensorboard,
        console=console,
        run_info={
            "dataset": dataset,
            "data_root": str(data.data_root or ""),
            "split": data.split,
            "val_split": val_split,
            "clip": models.clip_name,
            "clip_size": clip_size,
            "models": models.source,
            "sam": proposer_key or None,
        },
    )
    if run.resume:
        step = trainer.resume()
        if not quiet:
            console.print(f"resumed at step {step} of {config.train.steps}")
    summary = trainer.fit(progress=not quiet)
    final = output / f"{FINAL_STEM}.pth"
    console.print(
        escape(
            f"done: {summary.step} steps in {time.perf_counter() - t0:.0f} s; "
            f"wrote {final}. Use it: samadapter segment IMAGE --adapter-checkpoint "
            f"{final} --clip {models.clip_name} --classes-file "
            f"{output / 'classes.txt'}"
        ),
        soft_wrap=True,
        highlight=False,
    )


def _prepare(data: TrainingFeatures, label: str, quiet: bool) -> None:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=len(data))
        report = data.prepare(lambda _: bar.advance(task))
    if not quiet:
        console.print(
            f"{label}: {report.computed} computed, {report.cached} from the cache "
            f"({report.seconds:.1f} s)"
        )
