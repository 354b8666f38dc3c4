"""MAFT+ pieces: the cdt against a hand-written reference of the official equations, its official
parameter names/shapes, and the reshape quirk of MAFT+'s dense projection."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from maftp_layout import cdt_table  # tests/maftp_layout.py: the official names as data

from samadapter.modeling.cdt import ContentDependentTransfer, sine_position_encoding
from samadapter.modeling.clip_backbone import ClipBackbone
from samadapter.modeling.embeddings import adapter_input, refine_text
from samadapter.modeling.mask_adapter import MaskAdapter


def reference_position(h: int, w: int, c: int) -> torch.Tensor:
    """Mask2Former's PositionEmbeddingSine(c/2, normalize=True) with no padding mask, by loops."""
    half = c // 2
    out = torch.zeros(c, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            yv = (i + 1) / (h + 1e-6) * 2 * math.pi
            xv = (j + 1) / (w + 1e-6) * 2 * math.pi
            for k in range(half):
                dim_t = 10000 ** (2 * (k // 2) / half)
                f = math.sin if k % 2 == 0 else math.cos
                out[k, i, j] = f(yv / dim_t)
                out[half + k, i, j] = f(xv / dim_t)
    return out.float()


def reference_cdt(
    sd: dict[str, torch.Tensor],
    image: torch.Tensor,
    text: torch.Tensor,
    heads: int,
    norm_update: bool,
) -> torch.Tensor:
    """The official cdt's forward for one image, from its equations (no nn modules).

    text rows t attend over tokens f (+ position p on the keys):
    q = t Wq + bq, k = (f + p) Wk + bk, v = f Wv + bv; per head softmax(q k^T / sqrt(d)) v;
    a = out_proj(concat); norm_update: t + LN(MLP(a)); else LN(t + MLP(a)).
    """
    p = "cdt.cross_atten."
    c, h, w = image.shape
    pos = reference_position(h, w, c).reshape(c, h * w).T
    f = image.reshape(c, h * w).T
    wq, wk, wv = sd[p + "multihead_attn.in_proj_weight"].chunk(3)
    bq, bk, bv = sd[p + "multihead_attn.in_proj_bias"].chunk(3)
    q, k, v = text @ wq.T + bq, (f + pos) @ wk.T + bk, f @ wv.T + bv
    d = c // heads
    outs = []
    for i in range(heads):
        s = slice(i * d, (i + 1) * d)
        att = torch.softmax(q[:, s] @ k[:, s].T / math.sqrt(d), dim=-1)
        outs.append(att @ v[:, s])
    a = torch.cat(outs, dim=1) @ sd[p + "multihead_attn.out_proj.weight"].T
    a = a + sd[p + "multihead_attn.out_proj.bias"]
    m = a @ sd[p + "MLP.weight"].T + sd[p + "MLP.bias"]
    ln = (sd[p + "norm.weight"], sd[p + "norm.bias"])
    if norm_update:
        return text + F.layer_norm(m, (c,), *ln)
    return F.layer_norm(text + m, (c,), *ln)


def test_sine_position_encoding_matches_the_loop_reference() -> None:
    got = sine_position_encoding(3, 5, 16)
    assert got.shape == (1, 16, 3, 5)
    assert torch.allclose(got[0], reference_position(3, 5, 16), atol=1e-5)


@pytest.mark.parametrize("c", [768, 640, 32])
def test_cdt_keys_and_shapes_are_the_official_ones(c: int) -> None:
    model = MaskAdapter(clip_dim=c, hidden_dim=32, cdt_norm_update=False)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("cdt.")}
    assert got == cdt_table(c)
    assert not any(k.startswith("cdt.") for k in MaskAdapter(c, hidden_dim=32).state_dict())


@pytest.mark.parametrize("norm_update", [False, True])
def test_cdt_matches_the_reference_equations(norm_update: bool) -> None:
    torch.manual_seed(1)
    c, heads = 32, 8
    cdt = ContentDependentTransfer(c, heads, norm_update=norm_update).eval()
    sd = {f"cdt.{k}": torch.randn_like(v) * 0.3 for k, v in cdt.state_dict().items()}
    cdt.load_state_dict({k[4:]: v for k, v in sd.items()}, strict=True)
    image = torch.randn(2, c, 3, 4)
    text = F.normalize(torch.randn(5, c), dim=-1)
    with torch.no_grad():
        got = cdt(image, text)
    assert got.shape == (2, 5, c)
    for b in range(2):
        want = reference_cdt(sd, image[b], text, heads, norm_update)
        assert torch.allclose(got[b], want, atol=1e-4), (got[b] - want).abs().max()
    # The two residual forms really differ, and each row depends on the image.
    other = ContentDependentTransfer(c, heads, norm_update=not norm_update).eval()
    other.load_state_dict(cdt.state_dict())
    with torch.no_grad():
        assert not torch.allclose(other(image, text), got, atol=1e-3)
    assert not torch.allclose(got[0], got[1], atol=1e-3)


def test_cdt_refines_each_text_row_on_its_own() -> None:
    torch.manual_seed(2)
    cdt = ContentDependentTransfer(32).eval()
    image = torch.randn(1, 32, 2, 3)
    text = F.normalize(torch.randn(6, 32), dim=-1)
    with torch.no_grad():
        whole = cdt(image, text)[0]
        part = cdt(image, text[[4, 1]])[0]
    assert torch.allclose(whole[[4, 1]], part, atol=1e-6)


def test_refine_text_appends_the_normalised_void_then_refines() -> None:
    torch.manual_seed(3)
    adapter = MaskAdapter(32, hidden_dim=32, cdt_norm_update=True).eval()
    context = torch.randn(1, 32, 2, 2)
    text = F.normalize(torch.randn(4, 32), dim=-1)
    with torch.no_grad():
        got = refine_text(adapter, context, text)
        void = F.normalize(adapter.void_embedding.weight, dim=-1)
        assert adapter.cdt is not None
        want = adapter.cdt(context, torch.cat([text, void]))[0]
    assert got.shape == (5, 32)
    assert torch.allclose(got, want)
    with pytest.raises(ValueError, match="cdt"):
        refine_text(MaskAdapter(32, hidden_dim=32), context, text)


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    torch.manual_seed(0)
    return ClipBackbone.from_arch("tiny-random").eval()


def test_maftp_projection_is_the_reshape_quirk_not_a_permute(backbone: ClipBackbone) -> None:
    torch.manual_seed(4)
    raw = torch.randn(1, 320, 2, 3)
    with torch.no_grad():
        got = backbone.project_dense_maftp(raw)
        # The official lines: x.reshape(B*h*w, C)[..., None, None] -> trunk.head -> visual.head
        # -> reshape(B, h, w, C') -> permute(0, 3, 1, 2).
        m = backbone.model.visual
        x = m.head(m.trunk.head(raw.reshape(6, 320)[..., None, None]))
        want = x.reshape(1, 2, 3, -1).permute(0, 3, 1, 2)
        clean = backbone.project_dense(raw)  # a per-pixel (permute) projection
    assert got.shape == clean.shape == (1, 32, 2, 3)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, clean, atol=1e-2)
    # Quirk pinned by value: position (0, 1) of the quirk map projects the 2nd run of 320
    # consecutive values of the channel-first memory, i.e. channels 53..106 of all 6 positions.
    with torch.no_grad():
        run = raw.flatten()[320:640]
        assert torch.allclose(got[0, :, 0, 1], backbone.project_pooled(run[None])[0], atol=1e-6)


def test_adapter_input_picks_the_projection_by_family(backbone: ClipBackbone) -> None:
    raw = torch.randn(1, 320, 2, 3)
    with torch.no_grad():
        maftp = adapter_input(backbone, MaskAdapter(32, 32, cdt_norm_update=False), raw)
        fcclip = adapter_input(backbone, MaskAdapter(32, 32), raw)
        assert torch.equal(maftp, backbone.project_dense_maftp(raw))
        assert torch.equal(fcclip, backbone.project_dense(raw))
