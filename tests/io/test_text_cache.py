"""The text-embedding cache is untrusted: a bad entry is a miss, recomputed and replaced."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from samadapter.io.text_cache import TextEmbeddingCache, load_text_embeddings
from samadapter.models import load_segmenter
from samadapter.pipeline import Segmenter
from samadapter.vocab import TEMPLATES, parse_classes

VOCAB = parse_classes("cat,sofa|couch,lamp")


def _write(path: Path, content: object) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content, allow_pickle=True)


BAD_ENTRIES = {
    "wrong width": np.ones((4, 7), np.float32),  # would be 'mat1 and mat2 shapes cannot be...'
    "wrong rows": np.ones((3, 32), np.float32),
    "one row short of two dims": np.ones(32, np.float32),
    "integers": np.ones((4, 32), np.int64),
    "NaN": np.full((4, 32), np.nan, np.float32),
    "pickled object": np.array([{"a": 1}], dtype=object),
    "truncated": b"\x93NUMPY\x01\x00",
    "text": b"hello",
}


def test_segmenter_cache_knows_the_text_width() -> None:
    seg = load_segmenter("tiny-random", device="cpu", progress=False)
    assert isinstance(seg.text_store, TextEmbeddingCache) and seg.text_store.dim == 32


@pytest.mark.parametrize("what", list(BAD_ENTRIES))
def test_bad_cache_entry_is_recomputed_and_replaced(
    tiny_segmenter: Segmenter, tmp_path: Path, what: str
) -> None:
    store = TextEmbeddingCache(tmp_path, "tiny:seed0", dim=32)
    seg = dataclasses.replace(tiny_segmenter, text_store=store, _text_cache={})
    fresh = seg.text_classifier(VOCAB).embeddings  # fills the cache
    entry = tmp_path / f"{store.key(TEMPLATES, VOCAB.flat_names())}.npy"
    assert entry.is_file()
    _write(entry, BAD_ENTRIES[what])
    assert store.get(TEMPLATES, VOCAB.flat_names()) is None

    again = dataclasses.replace(tiny_segmenter, text_store=store, _text_cache={})
    emb = again.text_classifier(VOCAB).embeddings
    assert emb.shape == (4, 32) and torch.allclose(emb, fresh)
    repaired = np.load(entry)
    assert repaired.shape == (4, 32) and np.allclose(repaired, fresh.numpy())


def test_store_without_a_width_still_checks_rows_and_values(tmp_path: Path) -> None:
    np.save(tmp_path / "k.npy", np.ones((2, 5), np.float64))
    got = load_text_embeddings(tmp_path, "k", rows=2)
    assert got is not None and got.dtype == torch.float32 and got.shape == (2, 5)
    assert load_text_embeddings(tmp_path, "k", rows=3) is None
    assert load_text_embeddings(tmp_path, "k", rows=2, dim=4) is None
    assert load_text_embeddings(tmp_path, "missing") is None


def test_pipeline_rejects_a_store_answer_of_the_wrong_width(tiny_segmenter: Segmenter) -> None:
    """A store without width checks (any TextStore) cannot push a wrong width through either."""
    seg = dataclasses.replace(tiny_segmenter, _text_cache={})

    class Liar:
        def get(self, templates, names):  # type: ignore[no-untyped-def]
            return torch.ones(len(names), 7)

        def put(self, templates, names, embeddings):  # type: ignore[no-untyped-def]
            self.stored = embeddings

    liar = Liar()
    seg.text_store = liar
    emb = seg.text_classifier(VOCAB).embeddings
    assert emb.shape == (4, 32) and liar.stored.shape == (4, 32)
