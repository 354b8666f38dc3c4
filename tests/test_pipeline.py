"""Pipeline on tiny random models: classification of given masks, filtering, chunking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from samadapter.errors import ConfigError
from samadapter.modeling.proposer import Proposals
from samadapter.pipeline import PipelineSettings, Segmenter, resolve_device
from samadapter.structures import UNKNOWN_NAME
from samadapter.vocab import parse_classes

VOCAB = parse_classes("red thing,green thing|lime thing,blue thing")


def with_settings(seg: Segmenter, **kw: object) -> Segmenter:
    return dataclasses.replace(seg, settings=dataclasses.replace(seg.settings, **kw),
                               _text_cache={})


def test_class_probabilities_shape_and_void(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    text = tiny_segmenter.text_classifier(VOCAB)
    assert text.embeddings.shape == (4, 32)  # 4 names (one synonym)
    assert text.name_to_class.tolist() == [0, 1, 1, 2]
    probs = tiny_segmenter.class_probabilities(image, masks, text)
    assert probs.shape == (3, 3) and probs.dtype == np.float32
    assert np.all(probs >= 0) and np.all(probs.sum(axis=1) < 1.0)  # void takes the rest
    assert not np.allclose(probs[0], probs[1])  # different masks, different scores


def test_mask_batch_does_not_change_scores(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    one = with_settings(tiny_segmenter, mask_batch=1)
    text = one.text_classifier(VOCAB)
    a = one.class_probabilities(image, masks, text)
    b = tiny_segmenter.class_probabilities(image, masks, text)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_mask_pooling_differs_from_adapter(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    pooling = with_settings(tiny_segmenter, classifier="mask-pooling")
    text = pooling.text_classifier(VOCAB)
    a = pooling.class_probabilities(image, masks, text)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)  # no void without the adapter
    assert not np.allclose(a, tiny_segmenter.class_probabilities(image, masks, text))


def test_classify_result_fields(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    seg = with_settings(tiny_segmenter, score_thresh=0.0)
    result = seg.classify(image, masks, VOCAB, file_name="scene.png")
    probs = seg.class_probabilities(image, masks, seg.text_classifier(VOCAB))
    keep = probs.max(axis=1) >= 1 - probs.sum(axis=1)
    assert len(result) == keep.sum()
    assert result.file_name == "scene.png"
    assert result.class_names == ["red thing", "green thing", "blue thing"]
    np.testing.assert_array_equal(result.class_ids, probs[keep].argmax(axis=1))
    np.testing.assert_allclose(result.scores, probs[keep].max(axis=1))
    assert np.isnan(result.predicted_iou).all()  # bare masks carry no SAM fields
    assert {"text", "clip_dense", "classify"} <= set(result.timings)


def test_score_thresh_and_keep_unknown(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    strict = with_settings(tiny_segmenter, score_thresh=1.0)
    assert len(strict.classify(image, masks, VOCAB)) == 0
    kept = with_settings(tiny_segmenter, score_thresh=1.0, keep_unknown=True)
    result = kept.classify(image, masks, VOCAB)
    assert len(result) == 3
    assert result.class_names[-1] == UNKNOWN_NAME
    assert result.labels == [UNKNOWN_NAME] * 3
    assert result.semantic_map().max() == 3  # unknown is a class of its own in the map


def test_empty_masks_are_dropped_and_no_masks_is_fine(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    seg = with_settings(tiny_segmenter, score_thresh=0.0, keep_unknown=True)
    masks = np.concatenate([masks, np.zeros((1, 48, 64), dtype=bool)])
    assert len(seg.classify(image, masks, VOCAB)) == 3
    empty = seg.classify(image, np.zeros((0, 48, 64), dtype=bool), VOCAB)
    assert len(empty) == 0 and empty.masks.shape == (0, 48, 64)


def test_end_to_end_with_tiny_sam(tiny_segmenter: Segmenter, scene) -> None:
    image, _ = scene
    result = tiny_segmenter(image, VOCAB)
    assert result.masks.shape[1:] == (48, 64)
    assert {"sam_encoder", "sam_decoder", "clip_dense"} <= set(result.timings)


def test_masks_of_wrong_size_are_refused(tiny_segmenter: Segmenter, scene) -> None:
    image, _ = scene
    with pytest.raises(ConfigError, match="masks are"):
        tiny_segmenter.classify(image, np.zeros((1, 10, 10), dtype=bool), VOCAB)


def test_text_embeddings_are_cached(tiny_segmenter: Segmenter) -> None:
    assert tiny_segmenter.text_classifier(VOCAB) is tiny_segmenter.text_classifier(VOCAB)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="classifier"):
        PipelineSettings(classifier="nearest")
    with pytest.raises(ConfigError, match="score-thresh"):
        PipelineSettings(score_thresh=1.5)
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_proposals_are_carried_into_the_result(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    props = Proposals(masks, np.array([0.9, 0.8, 0.7], np.float32),
                      np.array([0.99, 0.98, 0.97], np.float32),
                      np.array([[1, 2], [3, 4], [5, 6]], np.float32),
                      np.tile(np.array([0, 0, 64, 48], np.float32), (3, 1)))
    seg = with_settings(tiny_segmenter, score_thresh=0.0, keep_unknown=True)
    result = seg.classify(image, props, VOCAB)
    np.testing.assert_allclose(result.predicted_iou, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.point_coords, [[1, 2], [3, 4], [5, 6]])


def test_features_computed_once_serve_both_classifiers(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    text = tiny_segmenter.text_classifier(VOCAB)
    feats = tiny_segmenter.image_features(image)
    assert feats.raw.shape == (1, 320, 2, 3) and feats.canvas == (64, 96)
    assert feats.resized == (64, 85) and feats.image_size == (48, 64)
    for classifier in ("mask-adapter", "mask-pooling"):
        np.testing.assert_allclose(
            tiny_segmenter.class_probabilities(feats, masks, text, classifier=classifier),
            with_settings(tiny_segmenter, classifier=classifier).class_probabilities(
                image, masks, text), atol=1e-6)
