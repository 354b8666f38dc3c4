"""The training forward pass equals the pipeline's inference path, with gradients to the adapter
only."""

from __future__ import annotations

import numpy as np
import torch

from samadapter.modeling.classifier import classification_logits
from samadapter.pipeline import PipelineSettings, Segmenter
from samadapter.train.forward import canvas_masks, mask_embeddings
from samadapter.vocab import parse_classes


def test_same_probabilities_as_the_pipeline(tiny, scene) -> None:
    backbone, adapter = tiny()
    with torch.no_grad():
        adapter.void_embedding.weight.normal_()  # make the void class count
    image, masks = scene
    vocab = parse_classes("red|crimson,green,blue")
    seg = Segmenter(backbone, adapter, None, PipelineSettings(clip_size=64))
    text = seg.text_classifier(vocab)
    expected = seg.class_probabilities(image, masks, text)

    feats = seg.image_features(image)
    raw = feats.raw.clone()
    m = canvas_masks(masks, feats.resized, feats.canvas)
    assert m.shape == (1, 3, *feats.canvas)
    emb = mask_embeddings(backbone, adapter, raw, m)
    logits = classification_logits(
        emb,
        text.embeddings.clone(),
        text.name_to_class.clone(),
        3,
        adapter.void_embedding.weight,
        backbone.logit_scale,
    )
    probs = logits.softmax(dim=-1)[:, :3]
    np.testing.assert_allclose(probs.detach().numpy(), expected, atol=1e-5)

    for p in backbone.parameters():
        p.requires_grad_(False)
    logits.sum().backward()
    assert adapter.mask_adapter.final.weight.grad is not None
    assert adapter.mask_adapter.mask_downscaling[0].weight.grad is not None
    assert adapter.void_embedding.weight.grad is not None
    assert all(p.grad is None for p in backbone.parameters())
