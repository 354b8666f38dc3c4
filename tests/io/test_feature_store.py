"""Feature cache round trip: float16 features, RLE masks and SAM fields come back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter.errors import OutputError
from samadapter.io.feature_store import load_features, save_features
from samadapter.modeling.proposer import Proposals
from samadapter.pipeline import ImageFeatures


def test_round_trip(tmp_path: Path) -> None:
    raw = torch.randn(1, 8, 2, 3)
    feats = ImageFeatures(raw=raw, resized=(60, 90), canvas=(64, 96), image_size=(30, 45))
    masks = np.zeros((2, 30, 45), dtype=bool)
    masks[0, 3:9, 4:20] = True
    masks[1, 10:, :7] = True
    props = Proposals(
        masks,
        np.array([0.9, 0.8], np.float32),
        np.array([0.97, 0.96], np.float32),
        np.array([[5, 6], [2, 20]], np.float32),
        np.tile(np.array([0, 0, 45, 30], np.float32), (2, 1)),
    )
    path = save_features(tmp_path / "a" / "x.npz", feats, props, {"clip": "tiny"})
    assert path.exists() and not list(path.parent.glob(".*tmp*"))
    got, got_props, meta = load_features(path)
    assert meta == {"version": 1, "clip": "tiny"}
    assert (got.resized, got.canvas, got.image_size) == ((60, 90), (64, 96), (30, 45))
    torch.testing.assert_close(got.raw, raw.half().float())
    assert got_props is not None
    np.testing.assert_array_equal(got_props.masks, masks)
    np.testing.assert_allclose(got_props.point_coords, [[5, 6], [2, 20]])
    np.testing.assert_allclose(got_props.predicted_iou, [0.9, 0.8])


def test_without_proposals_and_with_no_masks(tmp_path: Path) -> None:
    feats = ImageFeatures(
        raw=torch.zeros(1, 4, 1, 1), resized=(32, 32), canvas=(32, 32), image_size=(10, 10)
    )
    assert load_features(save_features(tmp_path / "f.npz", feats, None))[1] is None
    empty = Proposals.from_masks(np.zeros((0, 10, 10), dtype=bool))
    _, props, _ = load_features(save_features(tmp_path / "g.npz", feats, empty))
    assert props is not None and props.masks.shape == (0, 10, 10)


def test_unreadable_cache_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(OutputError, match=r"bad\.npz"):
        load_features(tmp_path / "bad.npz")


def test_a_text_or_pickled_file_never_gets_numpys_advice_to_load_it_unsafely(
    tmp_path: Path,
) -> None:
    (tmp_path / "text.npz").write_text("junk\n")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path in (tmp_path / "text.npz", tmp_path / "obj.npy"):
        with pytest.raises(OutputError) as info:
            load_features(path)
        text = str(info.value)
        assert path.name in text and "not an .npz archive of arrays" in text
        assert "allow_pickle" not in text and "pickle.load" not in text
