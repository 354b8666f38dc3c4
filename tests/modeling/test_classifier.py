"""Classification of mask embeddings: logit scale cap, synonyms max, void class."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from samadapter.modeling.classifier import classification_logits


def classify_embeddings(*args: Any, **kwargs: Any) -> torch.Tensor:
    """Class probabilities as the pipeline takes them: the logits' softmax, void dropped."""
    return classification_logits(*args, **kwargs).softmax(dim=-1)[:, : args[3]]


def test_probabilities_by_hand_with_void() -> None:
    mask = torch.tensor([[1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # class0, class1, class1 synonym
    void = torch.tensor([[-1.0, 0.0]])
    scale = math.log(10.0)  # exp -> 10, below the cap of 100
    probs = classify_embeddings(mask, text, [0, 1, 1], 2, void, scale)
    logits = torch.tensor([10.0, max(0.0, 6.0), -10.0])  # class1 = max(0, 0.6*10)
    expected = logits.softmax(0)[:2]
    assert torch.allclose(probs[0], expected, atol=1e-6)


def test_logit_scale_is_capped_at_100() -> None:
    mask = torch.tensor([[1.0, 0.0]])
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    probs = classify_embeddings(mask, text, [0, 1], 2, None, logit_scale=math.log(1000.0))
    assert probs[0, 0].item() == pytest.approx(torch.tensor([100.0, 0.0]).softmax(0)[0].item())
    assert probs.sum().item() == pytest.approx(1.0)


def test_unnormalised_inputs_are_normalised() -> None:
    mask = torch.tensor([[5.0, 0.0]])
    text = torch.tensor([[3.0, 0.0], [0.0, 0.5]])
    a = classify_embeddings(mask, text, [0, 1], 2, torch.tensor([0.0, -7.0]), 2.0)
    b = classify_embeddings(
        mask / 5, text / text.norm(dim=1, keepdim=True), [0, 1], 2, torch.tensor([0.0, -1.0]), 2.0
    )
    assert torch.allclose(a, b)
