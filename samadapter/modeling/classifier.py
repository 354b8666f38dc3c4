"""Open-vocabulary classification of mask embeddings against text embeddings.

The rule (logit scale, synonyms, void) is restated in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from samadapter.vocab import class_logits


def classify_embeddings(
    mask_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    name_to_class: Sequence[int] | torch.Tensor,
    num_classes: int,
    void_embedding: torch.Tensor | None,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """Class probabilities of each mask.

    Cosine similarity times ``min(exp(logit_scale), 100)``, max over synonyms, the void class
    appended last when given, softmax, void dropped.

    Args:
        mask_embeddings: ``[Q, C]`` projected mask embeddings.
        text_embeddings: ``[T, C]`` text embeddings (one per class name / synonym).
        name_to_class: ``T`` class indices.
        num_classes: ``K``.
        void_embedding: ``[1, C]`` or ``[C]`` learned no-object embedding, or ``None``.
        logit_scale: CLIP's (log) logit scale parameter.

    Returns:
        ``[Q, K]`` probabilities; rows sum to ``1 - p(void)``.
    """
    x = F.normalize(mask_embeddings.float(), dim=-1)
    t = F.normalize(text_embeddings.float(), dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=torch.float32).exp().clamp(max=100.0)
    logits = class_logits(scale * x @ t.T, name_to_class, num_classes)
    if void_embedding is not None:
        v = F.normalize(void_embedding.float().reshape(1, -1), dim=-1)
        logits = torch.cat([logits, scale * x @ v.T], dim=1)
    probs = logits.softmax(dim=-1)
    return probs[:, :num_classes]


def refined_logits(
    mask_embeddings: torch.Tensor,
    refined_text: torch.Tensor,
    name_to_class: Sequence[int] | torch.Tensor,
    num_classes: int,
    logit_scale: torch.Tensor | float,
    with_void: bool = True,
) -> torch.Tensor:
    """Class logits against a MAFT+ text classifier refined by the cdt (differentiable).

    As MAFT+ scores: only the mask embeddings are L2-normalised; the refined text rows are used
    as the cdt returns them (its LayerNorm output is not unit-norm). Logits are
    ``min(exp(logit_scale), 100) · x̂ · t``, a class takes its best synonym, and the refined
    void row (the last row) gives the void logit.

    Args:
        mask_embeddings: ``[Q, C]`` projected mask embeddings.
        refined_text: ``[T + 1, C]`` the cdt's output for ``T`` names plus the void row last.
        name_to_class: ``T`` class indices.
        num_classes: ``K``.
        logit_scale: CLIP's (log) logit scale parameter.
        with_void: append the void logit.

    Returns:
        ``[Q, K + 1]`` float32 logits, void last (``[Q, K]`` without void).
    """
    x = F.normalize(mask_embeddings.float(), dim=-1)
    t = refined_text.float()
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=x.device).exp()
    scale = scale.clamp(max=100.0)
    logits = class_logits(scale * x @ t[:-1].T, name_to_class, num_classes)
    if not with_void:
        return logits
    return torch.cat([logits, scale * x @ t[-1:].T], dim=1)


def classify_refined(
    mask_embeddings: torch.Tensor,
    refined_text: torch.Tensor,
    name_to_class: Sequence[int] | torch.Tensor,
    num_classes: int,
    logit_scale: torch.Tensor | float,
    with_void: bool = True,
) -> torch.Tensor:
    """Class probabilities against a cdt-refined text classifier (:func:`refined_logits`).

    Returns:
        ``[Q, K]`` probabilities; with void, rows sum to ``1 - p(void)``.
    """
    logits = refined_logits(
        mask_embeddings, refined_text, name_to_class, num_classes, logit_scale, with_void
    )
    return logits.softmax(dim=-1)[:, :num_classes]
