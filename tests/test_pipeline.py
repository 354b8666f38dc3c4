"""Pipeline on tiny random models: classification of given masks, filtering, chunking."""

from __future__ import annotations

import copy
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
    return dataclasses.replace(
        seg, settings=dataclasses.replace(seg.settings, **kw), _text_cache={}
    )


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
    seg = tiny_segmenter  # the preset's defaults: keep ratio 0.8, no absolute threshold
    assert seg.settings.keep_ratio == 0.8 and seg.settings.score_thresh == 0.0
    result = seg.classify(image, masks, VOCAB, file_name="scene.png")
    probs = seg.class_probabilities(image, masks, seg.text_classifier(VOCAB))
    keep = (probs > 0.8 * probs.max(axis=0)).any(axis=1)
    assert len(result) == keep.sum() >= 1
    assert result.file_name == "scene.png"
    assert result.class_names == ["red thing", "green thing", "blue thing"]
    np.testing.assert_array_equal(result.class_ids, probs[keep].argmax(axis=1))
    np.testing.assert_allclose(result.scores, probs[keep].max(axis=1))
    np.testing.assert_allclose(result.class_scores, probs[keep])
    assert np.isnan(result.predicted_iou).all()  # bare masks carry no SAM fields
    assert {"text", "clip_dense", "classify"} <= set(result.timings)


# A hand-worked example of the demo's keep rule: 4 masks x 3 classes, ratio 0.8.
# Column maxima 0.60, 0.30, 0.10 -> thresholds 0.48, 0.24, 0.08.
HAND_P = np.array(
    [
        [0.60, 0.10, 0.05],  # best for class 0: kept
        [0.50, 0.30, 0.10],  # 0.50 > 0.48 (and best for 1 and 2): kept
        [0.26, 0.25, 0.04],  # 0.25 > 0.24 for class 1: kept, labelled class 0
        [0.30, 0.20, 0.07],
    ],  # under every threshold: dropped (though 0.30 > 0.26)
    dtype=np.float32,
)
HAND_VOID = 1 - HAND_P.sum(axis=1)  # 0.25, 0.10, 0.45, 0.43: masks 2 and 3 are void-top


def _hand_case(seg: Segmenter, monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, np.ndarray]:
    """Four masks on a 48x64 image whose probabilities are :data:`HAND_P`."""
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    masks = np.zeros((4, 48, 64), dtype=bool)
    masks[0, :, :32] = True  # left half
    masks[1, :24, :] = True  # top half
    masks[2, 24:, 32:] = True  # bottom right
    masks[3, 40:, :8] = True  # bottom-left corner
    monkeypatch.setattr(seg, "probabilities", lambda *a, **k: HAND_P.copy())
    return image, masks


def test_keep_rule_hand_worked(tiny_segmenter: Segmenter, monkeypatch) -> None:
    seg = with_settings(tiny_segmenter, keep_ratio=0.8)
    image, masks = _hand_case(seg, monkeypatch)
    result = seg.classify(image, masks, VOCAB)
    np.testing.assert_array_equal(result.masks, masks[[0, 1, 2]])
    assert result.class_ids.tolist() == [0, 0, 0]
    np.testing.assert_allclose(result.scores, [0.60, 0.50, 0.26])
    np.testing.assert_allclose(result.class_scores, HAND_P[:3])  # full rows are kept
    sem = result.semantic_map()  # einsum of the kept masks' full rows, argmax
    assert sem[0, 0] == 0  # masks 0+1: 1.10, 0.40, 0.15
    assert sem[30, 40] == 0  # mask 2 alone: 0.26 > 0.25
    assert sem[45, 2] == 0  # mask 0 (mask 3 was dropped)
    assert sem[30, 40] == 0 and (sem == -1).sum() == 0  # every pixel covered
    assert len(with_settings(seg, keep_ratio=0.0).classify(image, masks, VOCAB)) == 4


def test_score_thresh_is_opt_in_and_absolute(tiny_segmenter: Segmenter, monkeypatch) -> None:
    seg = with_settings(tiny_segmenter, keep_ratio=0.0, score_thresh=0.4)
    image, masks = _hand_case(seg, monkeypatch)
    assert seg.classify(image, masks, VOCAB).scores.tolist() == pytest.approx([0.60, 0.50])
    both = with_settings(seg, keep_ratio=0.8, score_thresh=0.55)
    monkeypatch.setattr(both, "probabilities", lambda *a, **k: HAND_P.copy())
    assert both.classify(image, masks, VOCAB).scores.tolist() == pytest.approx([0.60])


def test_keep_unknown_is_for_void_top_masks(tiny_segmenter: Segmenter, monkeypatch) -> None:
    plain = with_settings(tiny_segmenter, keep_ratio=0.8)
    image, masks = _hand_case(plain, monkeypatch)
    # Default: void-top masks are not rejected; mask 2 is kept and named by its best class.
    assert plain.classify(image, masks, VOCAB).labels == ["red thing"] * 3
    seg = with_settings(tiny_segmenter, keep_ratio=0.8, keep_unknown=True)
    monkeypatch.setattr(seg, "probabilities", lambda *a, **k: HAND_P.copy())
    result = seg.classify(image, masks, VOCAB)
    # Mask 2 (kept) and mask 3 (dropped by the rule) have void on top: both kept as unknown.
    assert result.class_names[-1] == UNKNOWN_NAME
    assert result.labels == ["red thing", "red thing", UNKNOWN_NAME, UNKNOWN_NAME]
    np.testing.assert_allclose(result.scores, [0.60, 0.50, 0.26, 0.30])
    sem = result.semantic_map()
    assert sem[30, 40] == 3  # mask 2 votes only for unknown (void 0.45)
    assert sem[45, 2] == 0  # mask 0's row (0.75 in all) vs mask 3's void 0.43


def test_real_void_top_mask_is_unknown(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    seg = with_settings(tiny_segmenter, keep_ratio=0.0, keep_unknown=True)
    adapter = copy.deepcopy(seg.adapter)
    assert adapter is not None
    emb = seg.mask_embeddings(image, masks[:1])
    with torch.no_grad():  # void = mask 0's own embedding: cosine 1, the largest logit
        adapter.void_embedding.weight.copy_(torch.from_numpy(emb))
    seg = dataclasses.replace(seg, adapter=adapter)
    probs = seg.class_probabilities(image, masks, seg.text_classifier(VOCAB))
    void = 1 - probs.sum(axis=1)
    assert void[0] > probs[0].max()
    result = seg.classify(image, masks, VOCAB)
    expected = [
        "unknown" if v > p.max() else VOCAB.names[int(p.argmax())]
        for v, p in zip(void, probs, strict=True)
    ]
    assert result.labels == expected and result.labels[0] == UNKNOWN_NAME


def test_empty_masks_are_dropped_and_no_masks_is_fine(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    seg = with_settings(tiny_segmenter, keep_ratio=0.0)
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


def test_a_single_2d_mask_is_one_clear_error(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    with pytest.raises(ConfigError, match=r"\[N, H, W\] array, got shape \(48, 64\)") as info:
        tiny_segmenter.classify(image, masks[0], VOCAB)
    assert "masks[None]" in str(info.value)
    assert len(tiny_segmenter.classify(image, masks[0][None], VOCAB).masks) == 1


def test_non_finite_or_odd_mask_arrays_are_one_clear_error(
    tiny_segmenter: Segmenter, scene
) -> None:
    image, masks = scene
    nan = masks.astype(np.float32)
    nan[0, 0, 0] = np.nan  # NaN is truthy: it would silently have become a mask pixel
    with pytest.raises(ConfigError, match="non-finite"):
        tiny_segmenter.classify(image, nan, VOCAB)
    with pytest.raises(ConfigError, match="bool"):
        tiny_segmenter.classify(image, masks.astype(str), VOCAB)
    as_float = tiny_segmenter.classify(image, masks.astype(np.float32), VOCAB, file_name="x")
    as_bool = tiny_segmenter.classify(image, masks, VOCAB, file_name="x")
    np.testing.assert_array_equal(as_float.masks, as_bool.masks)


def test_text_embeddings_are_cached(tiny_segmenter: Segmenter) -> None:
    assert tiny_segmenter.text_classifier(VOCAB) is tiny_segmenter.text_classifier(VOCAB)


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="classifier"):
        PipelineSettings(classifier="nearest")
    with pytest.raises(ConfigError, match="score-thresh"):
        PipelineSettings(score_thresh=1.5)
    with pytest.raises(ConfigError, match="keep-ratio"):
        PipelineSettings(keep_ratio=1.0)  # "> 1.0 x the best" would keep nothing
    with pytest.raises(ConfigError, match="clip-size"):
        PipelineSettings(clip_size=16)
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_proposals_are_carried_into_the_result(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    props = Proposals(
        masks,
        np.array([0.9, 0.8, 0.7], np.float32),
        np.array([0.99, 0.98, 0.97], np.float32),
        np.array([[1, 2], [3, 4], [5, 6]], np.float32),
        np.tile(np.array([0, 0, 64, 48], np.float32), (3, 1)),
    )
    seg = with_settings(tiny_segmenter, keep_ratio=0.0)
    result = seg.classify(image, props, VOCAB)
    np.testing.assert_allclose(result.predicted_iou, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(result.point_coords, [[1, 2], [3, 4], [5, 6]])


def test_features_computed_once_serve_both_classifiers(tiny_segmenter: Segmenter, scene) -> None:
    image, masks = scene
    text = tiny_segmenter.text_classifier(VOCAB)
    feats = tiny_segmenter.image_features(image)
    # 48x64 at CLIP size 64: the long side is already 64, so no resize; padded to 64x64.
    assert feats.raw.shape == (1, 320, 2, 2) and feats.canvas == (64, 64)
    assert feats.resized == (48, 64) and feats.image_size == (48, 64)
    for classifier in ("mask-adapter", "mask-pooling"):
        np.testing.assert_allclose(
            tiny_segmenter.class_probabilities(feats, masks, text, classifier=classifier),
            with_settings(tiny_segmenter, classifier=classifier).class_probabilities(
                image, masks, text
            ),
            atol=1e-6,
        )
