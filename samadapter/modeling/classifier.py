"""Open-vocabulary classification of mask embeddings against text embeddings.

The rule (logit scale, synonyms, void) is restated in docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from samadapter.vocab import class_logits


def classification_logits(
    mask_embeddings: torch.Tensor,
    text_embeddings: torch.Tensor,
    name_to_class: Sequence[int] | torch.Tensor,
    num_classes: int,
    void_embedding: torch.Tensor | None,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """Class logits of mask embeddings, the void class last (differentiable).

    Cosine similarity of the L2-normalised embeddings times ``min(exp(logit_scale), 100)``; a
    class with synonyms takes its best name: :func:`refined_logits` of the unit-norm text rows
    and void.

    Args:
        mask_embeddings: ``[Q, C]`` projected mask embeddings.
        text_embeddings: ``[T, C]`` text embeddings (one per class name / synonym).
        name_to_class: ``T`` class indices.
        num_classes: ``K``.
        void_embedding: ``[1, C]`` or ``[C]`` learned no-object embedding, or ``None``.
        logit_scale: CLIP's (log) logit scale parameter.

    Returns:
        ``[Q, K + 1]`` float32 logits (``[Q, K]`` without void).
    """
    void = text_embeddings[:1] if void_embedding is None else void_embedding  # no void: unused
    rows = F.normalize(torch.cat([text_embeddings.float(), void.float().reshape(1, -1)]), dim=-1)
    with_void = void_embedding is not None
    return refined_logits(mask_embeddings, rows, name_to_class, num_classes, logit_scale, with_void)


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
