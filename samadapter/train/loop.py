"""The Mask-Adapter training loop: ground-truth warm-up and mixed-mask training.

The recipe is restated in docs/architecture.md, Training.

:class:`Trainer` trains a :class:`~samadapter.modeling.mask_adapter.MaskAdapter` (head and void
embedding) on the frozen CLIP's features of a dataset (:class:`~samadapter.train.features.
TrainingFeatures`):

* **warmup**: each image contributes up to 32 random ground-truth masks; cross-entropy over the
  vocabulary plus the void class;
* **mixed**: SAM proposals matched to ground-truth masks (IoU > 0.7, at most 8 random pairs); per
  image 16 GT + 8 predicted + 8 matched GT masks (:func:`~samadapter.train.losses.compose_mixed`);
  cross-entropy (weight 2.0) on all of them plus ``5.0 * (1 - cos)`` between each predicted mask's
  embedding and its matched GT mask's (GT side detached).

AdamW (lr 1e-4, weight decay 0.05, none on norm layers and the void embedding, as Mask2Former's
optimiser builder), gradient-norm clipping at 1.0, linear warm-up then poly or cosine decay,
bfloat16 autocast on CUDA. All randomness of a step (which images, which masks, which pairs) is
drawn from generators seeded by ``(seed, step)``, so runs are reproducible on the CPU and a resumed
run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from samadapter.config import from_json, to_json
from samadapter.errors import CheckpointError, ConfigError, DatasetError, TrainingError
from samadapter.io.atomic import write_bytes_atomic, write_json_atomic
from samadapter.modeling.classifier import classification_logits, refined_logits
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.embeddings import adapter_embeddings, refine_text
from samadapter.modeling.mask_adapter import LayerNorm2d, MaskAdapter
from samadapter.train.checkpoints import (
    FINAL_STEM,
    STATE_FILE,
    capture_rng,
    load_training_state,
    prune_periodic,
    restore_rng,
    save_model_files,
    save_training_state,
)
from samadapter.train.config import TrainConfig
from samadapter.train.features import TrainingFeatures, TrainItem
from samadapter.train.forward import canvas_masks, freeze, project_features
from samadapter.train.gt_masks import random_subset
from samadapter.train.logs import TrainLog
from samadapter.train.losses import (
    compose_mixed,
    consistency_loss,
    mask_ce_loss,
    match_by_iou,
)
from samadapter.train.validation import val_line, validate
from samadapter.vocab import build_text_classifier


@dataclass
class TrainSummary:
    """What :meth:`Trainer.fit` did.

    Attributes:
        step: steps done in all (resumed runs count from 0).
        history: every logged training record (``step``, ``loss``, ``ce``, ``consistency``,
            ``lr``, ...).
        validations: every validation record.
        checkpoints: the model files written (detectron2 layout).
        seconds: wall time of this call.
    """

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def seeded_generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator seeded by a stable hash of ``(seed, *parts)``."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def _param_groups(adapter: MaskAdapter, weight_decay: float) -> list[dict[str, Any]]:
    """Parameters split as Mask2Former's builder does: no decay for norms and embeddings."""
    no_decay: list[nn.Parameter] = []
    decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in adapter.modules():
        for p in module.parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            if isinstance(module, (nn.LayerNorm, LayerNorm2d, nn.Embedding)):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


@dataclass
class _Selection:
    masks: np.ndarray  # [Q, H, W] bool
    targets: np.ndarray  # [Q] int64
    pred_rows: np.ndarray  # [N] rows of predicted masks
    matched_rows: np.ndarray  # [N] rows of their matched GT masks


class Trainer:
    """Trains a Mask-Adapter on a dataset's cached frozen-CLIP features.

    Args:
        backbone: the CLIP (frozen here: no gradients, eval mode).
        adapter: the Mask-Adapter to train (updated in place).
        data: training images (:class:`TrainingFeatures`; with a proposer for the mixed stage).
        config: hyper-parameters.
        output_dir: where checkpoints and logs go, or ``None`` for neither (tests, benchmarks).
        val_data: held-out images for validation, or ``None``.
        device: where training runs.
        clip_state_in_checkpoints: store ``backbone.clip_model.*`` in the detectron2-layout
            files (do so when the CLIP did not come from a separate open_clip file).
        tensorboard: ``True`` / ``None`` (when installed) / ``False``.
        console: where the progress bar and messages go.
        run_info: extra facts written to ``config.json`` (dataset, models, ...).
        prefetch_workers: threads that read the next step's images (cache files) while the
            current step computes (0: none). Reading is deterministic, so results do not change.
    """

    def __init__(
        self,
        backbone: ClipBackbone,
        adapter: MaskAdapter,
        data: TrainingFeatures,
        config: TrainConfig,
        output_dir: Path | None = None,
        *,
        val_data: TrainingFeatures | None = None,
        device: torch.device | str = "cpu",
        clip_state_in_checkpoints: bool = True,
        tensorboard: bool | None = None,
        console: Console | None = None,
        run_info: dict[str, Any] | None = None,
        prefetch_workers: int = 2,
    ) -> None:
        if len(data) == 0:
            raise ConfigError("the training dataset is empty")
        if config.stage == "mixed" and data.proposer is None:
            raise ConfigError(
                "mixed-mask training needs proposals",
                hint="give the training features a proposer (SAM)",
            )
        self.device = torch.device(device)
        self.config = config
        self.backbone = freeze(backbone.to(self.device))
        self.adapter = adapter.to(self.device).train()
        for p in self.adapter.parameters():
            p.requires_grad_(True)
        if self.adapter.cdt is not None:  # MAFT+'s cdt stays as MAFT+ trained it
            freeze(self.adapter.cdt)
        self.data = data
        self.val_data = val_data
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.clip_state_in_checkpoints = clip_state_in_checkpoints
        self.tensorboard = tensorboard
        self.console = console or Console()
        self.run_info = run_info or {}
        vocab = data.vocab
        self.num_classes = len(vocab)
        self.text = build_text_classifier(self.backbone.encode_text, vocab).to(self.device)
        self.name_to_class = torch.tensor(
            vocab.name_to_class_index(), dtype=torch.long, device=self.device
        )
        self.logit_scale = self.backbone.logit_scale.detach().float()
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.adapter, config.weight_decay), lr=config.lr
        )

        def lr_factor(step: int) -> float:  # a plain function: LambdaLR does not pickle it
            return self.config.lr_factor(step)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.step = 0
        self.updates = 0  # optimiser steps with labelled masks, in this process
        self._epochs: dict[int, np.ndarray] = {}
        self._log: TrainLog | None = None
        self._resumed = False
        self.prefetch_workers = prefetch_workers
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[TrainItem]] = {}

    # -- batches -----------------------------------------------------------------------------------

    def batch_indices(self, step: int) -> list[int]:
        """Dataset indices of step ``step``'s images: epoch-wise random permutations.

        Args:
            step: 0-based step.

        Returns:
            ``batch_size`` indices (an epoch boundary may fall inside a batch).
        """
        n = len(self.data)
        out = []
        for b in range(self.config.batch_size):
            pos = step * self.config.batch_size + b
            epoch = pos // n
            if epoch not in self._epochs:
                if len(self._epochs) > 4:
                    self._epochs.clear()
                gen = seeded_generator(self.config.seed, "epoch", epoch)
                self._epochs[epoch] = torch.randperm(n, generator=gen).numpy()
            out.append(int(self._epochs[epoch][pos % n]))
        return out

    def select_masks(self, item: TrainItem, generator: torch.Generator) -> _Selection:
        """The masks one image contributes to a step (see the module docstring).

        Args:
            item: the image.
            generator: random source for the picks.

        Returns:
            masks, their class targets, and the rows of predicted / matched GT masks.
        """
        c = self.config
        gt = item.gt
        empty = np.zeros(0, dtype=np.int64)
        if c.stage == "warmup":
            idx = random_subset(len(gt), c.max_gt_masks, generator)
            return _Selection(gt.masks[idx], gt.classes[idx], empty, empty)
        pairs = match_by_iou(item.proposal_iou(), generator, c.iou_thresh, c.max_pairs)
        comp = compose_mixed(len(gt), pairs, generator, c.max_masks, c.max_pairs)
        props = item.proposals if item.proposals is not None else np.zeros((0, *gt.masks.shape[1:]))
        masks = np.concatenate(
            [
                gt.masks[comp.gt_only],
                props[comp.pairs[:, 0]].astype(bool),
                gt.masks[comp.pairs[:, 1]],
            ]
        )
        return _Selection(
            masks, gt.classes[comp.gt_indices()], comp.pred_rows(), comp.matched_rows()
        )

    def step_items(self, step: int) -> list[TrainItem]:
        """The images of step ``step`` (prefetched ones taken from the pool); submits the reads
        of step ``step + 1``'s images to the prefetch threads."""
        items = []
        for index in self.batch_indices(step):
            pending = self._pending.pop(index, None)
            items.append(pending.result() if pending is not None else self.data[index])
        if self.prefetch_workers > 0 and step + 1 < self.config.steps:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.prefetch_workers, thread_name_prefix="samadapter-prefetch"
                )
            for index in self.batch_indices(step + 1):
                if index not in self._pending:
                    self._pending[index] = self._pool.submit(self.data.__getitem__, index)
        return items

    def close(self) -> None:
        """Stop the prefetch threads (a later step starts them again)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()

    def _autocast(self) -> torch.autocast:
        on = self.device.type == "cuda" and self.config.amp  # bfloat16 on CUDA with amp only
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on)

    def embed(self, item: TrainItem, masks: np.ndarray) -> torch.Tensor:
        """Adapter embeddings ``[Q, C]`` (float32) of ``masks`` ``[Q, H, W]`` of ``item``."""
        return self.embed_many([(item, masks)])[0]

    def embed_many(self, batch: list[tuple[TrainItem, np.ndarray]]) -> list[torch.Tensor]:
        """Adapter embeddings of several images' masks.

        Images whose features share a shape and canvas go through the adapter together (their
        mask sets zero-padded to the longest; padded rows are dropped), which saves per-call
        overhead for small models; the result equals per-image calls up to float rounding.

        Args:
            batch: ``(item, masks [Q_i, H_i, W_i])`` pairs.

        Returns:
            ``[Q_i, C]`` float32 embeddings per pair, in order.
        """
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, (item, _) in enumerate(batch):
            f = item.features
            groups.setdefault((tuple(f.raw.shape), f.resized, f.canvas), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(batch)
        for members in groups.values():
            f = batch[members[0]][0].features
            raw = torch.cat([batch[i][0].features.raw for i in members]).to(self.device)
            qmax = max(len(batch[i][1]) for i in members)
            with self._autocast():
                projected = project_features(self.backbone, raw, self.adapter)
                ms = []
                for i in members:
                    m = canvas_masks(batch[i][1], f.resized, f.canvas, self.device)
                    ms.append(torch.nn.functional.pad(m, (0, 0, 0, 0, 0, qmax - m.shape[1])))
                emb = adapter_embeddings(self.backbone, self.adapter, raw, torch.cat(ms), projected)
            for row, i in enumerate(members):
                out[i] = emb[row, : len(batch[i][1])].float()
        return [e for e in out if e is not None]

    def logits(self, embeddings: torch.Tensor, item: TrainItem | None = None) -> torch.Tensor:
        """``[Q, K + 1]`` logits (void last) of embeddings ``[Q, C]`` of ``item``'s masks.

        A MAFT+ adapter scores against the text refined by its (frozen) cdt with ``item``'s
        features, as MAFT+ trains and infers (the item is then required).
        """
        if self.adapter.cdt is None:
            return classification_logits(
                embeddings,
                self.text,
                self.name_to_class,
                self.num_classes,
                self.adapter.void_embedding.weight,
                self.logit_scale,
            )
        if item is None:
            raise ValueError("a MAFT+ adapter's logits need the image (its cdt context)")
        with torch.no_grad():
            raw = item.features.raw.to(self.device)
            with self._autocast():
                context = project_features(self.backbone, raw, self.adapter)
            refined = refine_text(self.adapter, context.float(), self.text)
        return refined_logits(
            embeddings, refined, self.name_to_class, self.num_classes, self.logit_scale
        )

    # -- one step ----------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """Run optimiser step :attr:`step` (then increment it).

        Returns:
            ``loss`` (weighted total), ``ce`` and ``consistency`` (unweighted means), ``lr``,
            ``grad_norm``, ``masks``, ``pairs``.
        """
        c = self.config
        self.adapter.train()
        lr = float(self.optimizer.param_groups[0]["lr"])
        chosen: list[tuple[TrainItem, np.ndarray]] = []
        targets, pred_rows, matched_rows = [], [], []
        offset = 0
        for slot, item in enumerate(self.step_items(self.step)):
            sel = self.select_masks(item, seeded_generator(c.seed, "masks", self.step, slot))
            if len(sel.targets) == 0:
                continue
            chosen.append((item, sel.masks))
            targets.append(torch.from_numpy(sel.targets))
            pred_rows.append(torch.from_numpy(sel.pred_rows + offset))
            matched_rows.append(torch.from_numpy(sel.matched_rows + offset))
            offset += len(sel.targets)
        embs = self.embed_many(chosen)
        stats = {"lr": lr, "masks": float(offset), "pairs": 0.0}
        if not embs:  # no labelled region in any image of the batch: nothing to learn from
            with warnings.catch_warnings():  # the schedule follows steps, updated or not
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler")
                self.scheduler.step()
            self.step += 1
            return {
                **stats,
                "loss": math.nan,
                "ce": math.nan,
                "consistency": math.nan,
                "grad_norm": 0.0,
            }
        emb = torch.cat(embs)
        tgt = torch.cat(targets).to(self.device)
        pr = torch.cat(pred_rows).to(self.device)
        mr = torch.cat(matched_rows).to(self.device)
        if self.adapter.cdt is None:
            logits = self.logits(emb)
        else:  # the text depends on the image: score each image's masks with its own
            logits = torch.cat(
                [self.logits(e, item) for e, (item, _) in zip(embs, chosen, strict=True)]
            )
        ce = mask_ce_loss(logits, tgt)
        cons = consistency_loss(emb[pr], emb[mr])
        loss = c.effective_ce_weight * ce + c.consistency_weight * cons
        if not bool(torch.isfinite(loss)):
            raise self._diverged(
                f"the loss is {loss.item()} (ce {ce.item()}, consistency {cons.item()})", chosen, lr
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.adapter.parameters() if p.grad is not None]
        clip = c.grad_clip if c.grad_clip > 0 else math.inf  # inf: the norm, gradients unchanged
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
        if not math.isfinite(grad_norm):  # checked before the step: the weights stay finite
            raise self._diverged(f"the gradient norm is {grad_norm}", chosen, lr)
        self.optimizer.step()
        self.updates += 1
        self.scheduler.step()
        self.step += 1
        return {
            **stats,
            "loss": loss.item(),
            "ce": ce.item(),
            "consistency": cons.item(),
            "grad_norm": grad_norm,
            "pairs": float(len(pr)),
        }

    def _diverged(
        self, what: str, chosen: list[tuple[TrainItem, np.ndarray]], lr: float
    ) -> TrainingError:
        names = ", ".join(item.name for item, _ in chosen[:4])
        return TrainingError(
            f"training stopped at step {self.step + 1}: {what}, on images {names} (lr {lr:.3g}); "
            "the weights of this step were not updated and no model file was written for it",
            hint="lower --lr or --grad-clip, or check those images' labels; earlier checkpoints "
            "are intact (--resume continues from the last one)",
        )

    def _check_learned(self, first_step: int, seen: set[int] | None = None) -> None:
        """Refuse to go on with (or call finished) a run that never had a labelled mask.

        Args:
            first_step: the step this call started at.
            seen: dataset indices of the images drawn so far in this call; when given, the check
                fires only once every training image was drawn (stop early, not at the end).

        Raises:
            DatasetError: steps ran in this call, none of them with a labelled region.
        """
        if seen is not None and len(seen) < len(self.data):
            return
        if self.step > first_step and self.updates == 0:
            n = self.step - first_step
            raise DatasetError(
                f"none of the {n} training steps had a labelled region to learn from: the "
                f"labels of the {len(self.data)} training images are all ignore / unlabelled "
                "pixels (or every region is below the minimum area); no model file was written",
                hint="check the label files, --ignore-index and --label-offset (e.g. 255 means "
                "ignore; 0-based or 1-based class ids?)",
            )

    # -- validation --------------------------------------------------------------------------------

    def validate(self, data: TrainingFeatures | None = None) -> dict[str, Any]:
        """Mask classification on held-out ground-truth masks
        (:func:`~samadapter.train.validation.validate`).

        Args:
            data: held-out images (default: the trainer's ``val_data``).

        Returns:
            the validation record (``{}`` without held-out images).
        """
        data = data if data is not None else self.val_data
        if data is None:
            return {}
        was_training = self.adapter.training
        self.adapter.eval()
        try:
            return validate(
                data,
                lambda item, masks: self.logits(self.embed(item, masks), item),
                self.num_classes,
                self.config.val_mask_batch,
            )
        finally:
            self.adapter.train(was_training)

    # -- checkpoints -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything :meth:`load_state` needs to continue exactly."""
        return {
            "step": self.step,
            "adapter": {k: v.detach().cpu() for k, v in self.adapter.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(),
            "config": to_json(self.config),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore adapter, optimiser, scheduler, step and RNG states.

        Raises:
            ConfigError: the saved run used settings that would make this one a different run
                (stage, batch size, learning rate, ... : all but ``steps`` and the logging /
                checkpoint cadence).
        """
        saved = from_json(TrainConfig, state["config"], f"{STATE_FILE} 'config'")
        diff = self.config.resume_differences(saved)
        if diff:
            raise ConfigError(
                "cannot resume with different settings: " + "; ".join(diff),
                hint="resume with the same flags, or start a new --output",
            )
        if state["step"] > self.config.steps:
            raise ConfigError(
                f"the saved run is at step {state['step']}, beyond --steps {self.config.steps}"
            )
        try:
            self.adapter.load_state_dict(state["adapter"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(
                f"training state does not fit this adapter: {str(exc).splitlines()[0]}"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if saved.steps != self.config.steps:
            # The schedule depends on the total: recompute the current lr for the new total.
            for group, base in zip(
                self.optimizer.param_groups, self.scheduler.base_lrs, strict=True
            ):
                group["lr"] = base * self.config.lr_factor(state["step"])
        restore_rng(state["rng"])
        self.step = int(state["step"])
        self._resumed = True

    def resume(self) -> int:
        """Load the training state from :attr:`output_dir`; returns the step reached."""
        if self.output_dir is None:
            raise ConfigError("resuming needs an output folder")
        self.load_state(load_training_state(self.output_dir))
        return self.step

    def save_checkpoint(self, final: bool = False) -> Path | None:
        """Write the model files (both layouts) and the training state for :attr:`step`.

        Args:
            final: name the model files ``model_final*`` (else ``model_<step>*``).

        Returns:
            the detectron2-layout model file, or ``None`` without an output folder.

        Raises:
            TrainingError: the adapter holds NaN / inf weights (nothing is written).
        """
        if self.output_dir is None:
            return None
        broken = [
            k
            for k, v in self.adapter.state_dict().items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if broken:
            raise TrainingError(
                f"the adapter has NaN / inf weights at step {self.step} "
                f"({', '.join(broken[:3])}); no model file was written",
                hint="start again from an earlier checkpoint with a lower --lr",
            )
        stem = FINAL_STEM if final else f"model_{self.step:07d}"
        clip = self.backbone.model.state_dict() if self.clip_state_in_checkpoints else None
        path, _ = save_model_files(self.output_dir, stem, self.adapter, clip, self.step)
        save_training_state(self.output_dir, {**self.state(), "model_file": path.name})
        if not final:
            prune_periodic(self.output_dir, self.config.keep_checkpoints)
        return path

    # -- the loop ----------------------------------------------------------------------------------

    def _write_run_files(self) -> None:
        assert self.output_dir is not None
        vocab = self.data.vocab
        write_json_atomic(
            self.output_dir / "config.json",
            {"config": to_json(self.config), "vocab": vocab.to_dict(), **self.run_info},
        )
        lines = "".join(",".join(names) + "\n" for names in vocab.classes)
        write_bytes_atomic(self.output_dir / "classes.txt", lines.encode("utf-8"))

    def fit(self, until: int | None = None, progress: bool = True) -> TrainSummary:
        """Train from :attr:`step` to ``until`` (default: ``config.steps``).

        Logs every ``log_every`` steps, checkpoints every ``checkpoint_every`` steps and at the
        end (``model_final*`` when ``config.steps`` is reached; else a resumable checkpoint of
        the step reached), validates every ``val_every`` steps and at the end. Ctrl-C saves a
        resumable checkpoint of the last finished step, then re-raises.

        Args:
            until: stop after this many steps in all (``<= config.steps``).
            progress: show a rich progress bar with the loss terms and learning rate.

        Returns:
            the records of this call.
        """
        c = self.config
        target = c.steps if until is None else min(until, c.steps)
        summary = TrainSummary(step=self.step)
        first_step = self.step
        self.updates = 0
        t_start = time.perf_counter()
        if self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_files()
            self._log = TrainLog(
                self.output_dir, self.step if self._resumed else None, self.tensorboard
            )
        last_ckpt = self.step
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        try:
            with Progress(*columns, console=self.console, disable=not progress) as bar:
                task = bar.add_task(f"train {c.stage}", total=c.steps, completed=self.step, info="")
                window: list[dict[str, float]] = []
                t_last = time.perf_counter()
                seen: set[int] = set()
                while self.step < target:
                    seen.update(self.batch_indices(self.step))
                    stats = self.train_step()
                    self._check_learned(first_step, seen)  # a whole epoch without a label
                    window.append(stats)
                    bar.update(task, completed=self.step, info=_info(stats))
                    if self.step % c.log_every == 0 or self.step == target:
                        now = time.perf_counter()
                        record = _mean_record(window, self.step)
                        record["seconds_per_step"] = (now - t_last) / len(window)
                        record["elapsed"] = now - t_start
                        t_last, window = now, []
                        summary.history.append(record)
                        if self._log is not None:
                            self._log.train(
                                self.step, {k: v for k, v in record.items() if k != "step"}
                            )
                    end = self.step == c.steps
                    if c.checkpoint_every > 0 and self.step % c.checkpoint_every == 0 and not end:
                        path = self.save_checkpoint()
                        last_ckpt = self.step
                        if path is not None:
                            summary.checkpoints.append(path)
                    val_every = c.effective_val_every
                    if self.val_data is not None and (
                        end or (val_every > 0 and self.step % val_every == 0)
                    ):
                        val = {"step": self.step, **self.validate()}
                        summary.validations.append(val)
                        if self._log is not None:
                            self._log.val(self.step, {k: v for k, v in val.items() if k != "step"})
                        if progress:
                            self.console.print(val_line(val))
                self._check_learned(first_step)
                if self.step == c.steps or self.step != last_ckpt:  # the final one, or resumable
                    path = self.save_checkpoint(final=self.step == c.steps)
                    if path is not None:
                        summary.checkpoints.append(path)
        except KeyboardInterrupt:
            if self.output_dir is not None and self.step != last_ckpt:
                self.save_checkpoint()
                self.console.print(f"interrupted: saved step {self.step}; continue with --resume")
            raise
        finally:
            self.close()
            if self._log is not None:
                self._log.close()
                self._log = None
        summary.step = self.step
        summary.seconds = time.perf_counter() - t_start
        return summary


def _mean_record(window: list[dict[str, float]], step: int) -> dict[str, float]:
    out: dict[str, float] = {"step": float(step)}
    for key in window[0]:
        values = [w[key] for w in window if math.isfinite(w[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    out["lr"] = window[-1]["lr"]
    return out


def _info(stats: dict[str, float]) -> str:
    parts = [f"loss {stats['loss']:.3f}", f"ce {stats['ce']:.3f}"]
    if stats.get("pairs"):
        parts.append(f"cons {stats['consistency']:.3f}")
    parts.append(f"lr {stats['lr']:.2e}")
    return "  ".join(parts)


__all__ = ["TrainConfig", "TrainSummary", "Trainer", "seeded_generator"]
