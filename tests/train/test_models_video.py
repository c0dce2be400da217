"""STCAM, HACN and WS-LGAN: shapes, gradients, attention and losses.

Truth comes from the papers' input sizes and layer definitions, from published layouts
(ResNet-50 trunk = 25,557,032 - 2,049,000 parameters; a one-layer GRU has
3 (I H + H^2 + 2 H) parameters), and from hand-computed values: attention with zeroed
weights is sigmoid(0) = 1/2 everywhere, Gaussian blobs at known distances, contrastive
losses of hand-picked vectors.  Each model runs forward and backward at its paper's input
size with batch 2; the comparisons between attention and no attention use small inputs.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from data_schema.errors import InputError
from train.models import MODELS, count_parameters, create_model
from train.models.hacn import HACN, FrameSelfAttention, SpatialAttentionPool
from train.models.stcam import (
    FEATURE_DIM,
    ChannelAttention3d,
    SpatialTemporalAttention,
    STCAMBlock,
    STCAMNet,
)
from train.models.ws_lgan import (
    WSLGAN,
    SelectiveFeatureUnit,
    WSLGANOutput,
    amg_target_loss,
    contrastive_loss,
    landmark_attention_targets,
    normalize_attention,
    ws_lgan_losses,
)

B = 2
RESNET50_TRUNK_PARAMS = 25_557_032 - 2_049_000  # torchvision's resnet50 minus its 1000-way FC


def _assert_trained(model: nn.Module, loss: torch.Tensor) -> None:
    """Backward runs, every trainable parameter gets a finite gradient."""
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


def _zero(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


def test_registry_builds_the_three_models():
    assert {"stcam", "hacn", "ws_lgan"} <= set(MODELS)
    assert isinstance(create_model("stcam", num_classes=6), STCAMNet)
    assert isinstance(create_model("ws_lgan", num_classes=6), WSLGAN)
    with pytest.raises(ValueError, match="accepts"):
        create_model("hacn", num_classes=7, frames=5)


# ----------------------------------------------------------------------------- STCAM

def test_stcam_full_size_forward_backward():
    torch.manual_seed(0)
    model = STCAMNet(num_classes=7)
    n = count_parameters(model)
    print(f"\nSTCAM parameters: {n:,} (paper: not given)")
    x = torch.randn(B, 3, 7, 224, 224)
    logits = model(x)
    assert logits.shape == (B, 7) and torch.isfinite(logits).all()
    _assert_trained(model, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 6])))
    assert model.classifier[1].in_features == FEATURE_DIM == 1072


def test_stcam_layout_follows_the_paper():
    model = STCAMNet(num_classes=6)
    # Stem: 3x7x7 kernel, stride (1, 2) (sec. 3.1).
    conv = model.stem[0][0]
    assert conv.kernel_size == (3, 7, 7) and conv.stride == (1, 2, 2)
    # STAM kernels: 3x7x7 in Inception-ResNet-A, 3x5x5 elsewhere (sec. 4.2); CAM r = 16.
    assert model.block_a.attention[1].conv.weight.shape == (1, 2, 3, 7, 7)
    for part in (model.reduction_a, model.block_b, model.reduction_b, model.block_c):
        assert part.attention[1].conv.weight.shape == (1, 2, 3, 5, 5)
    assert model.block_c.attention[0].mlp[0].weight.shape == (1072 // 16, 1072)
    model.eval()
    with torch.no_grad():
        feats = model.features(torch.randn(1, 3, 7, 64, 64))
    assert feats.shape == (1, 1072)
    with pytest.raises(ValueError, match="expects"):
        model(torch.randn(1, 7, 3, 64, 64))


def test_cam_scales_whole_channels_and_stam_whole_positions():
    torch.manual_seed(1)
    x = torch.randn(2, 32, 3, 6, 5)
    ratio = ChannelAttention3d(32)(x) / x
    # One factor per (sample, channel), in (0, 1).
    assert torch.allclose(ratio, ratio[:, :, :1, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()
    assert ratio[:, :, 0, 0, 0].std() > 1e-3  # not one constant: really channel-wise
    ratio = SpatialTemporalAttention((3, 5, 5))(x) / x
    # One factor per (sample, t, h, w) position, shared by all channels.
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-5)
    assert ratio[:, 0].std() > 1e-3


def test_stcam_block_with_zero_weights_is_a_quarter():
    # sigmoid(0) = 1/2 from 3D-CAM, then 1/2 from STAM.
    block = STCAMBlock(32, (3, 7, 7))
    _zero(block)
    x = torch.randn(2, 32, 3, 8, 8)
    assert torch.allclose(block(x), 0.25 * x, atol=1e-6)


def test_stcam_attention_changes_the_output():
    torch.manual_seed(2)
    with_att = STCAMNet(num_classes=7).eval()
    without = STCAMNet(num_classes=7, attention=False).eval()
    missing, unexpected = without.load_state_dict(with_att.state_dict(), strict=False)
    assert not missing and all(".attention." in k for k in unexpected)
    x = torch.randn(B, 3, 7, 48, 48)
    with torch.no_grad():
        a, b = with_att(x), without(x)
    assert a.shape == b.shape == (B, 7)
    assert (a - b).abs().max() > 1e-4


# ----------------------------------------------------------------------------- HACN

def test_hacn_full_size_forward_backward():
    torch.manual_seed(0)
    model = create_model("hacn", num_classes=7)
    assert isinstance(model, HACN)
    trunk = count_parameters(model.trunk)
    gru = count_parameters(model.gru)
    print(f"\nHACN parameters: {count_parameters(model):,} (ResNet-50 trunk {trunk:,}, "
          f"GRU {gru:,}; paper: not given)")
    assert trunk == RESNET50_TRUNK_PARAMS
    assert gru == 3 * (2048 * 128 + 128 * 128 + 2 * 128)  # one layer, 128 units (sec. 3.3)
    x = torch.randn(B, 5, 3, 224, 224)
    logits = model(x)
    assert logits.shape == (B, 7) and torch.isfinite(logits).all()
    _assert_trained(model, torch.nn.functional.cross_entropy(logits, torch.tensor([1, 4])))


def test_frame_self_attention_hand_values():
    att = FrameSelfAttention(3)
    with torch.no_grad():
        att.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
        att.fc.bias.zero_()
    # Logits 0 and ln 3 -> sigmoid 1/2 and 3/4 -> factors 2 * (1/2, 3/4) / (5/4).
    t = torch.tensor([[[0.0, 5.0, 5.0], [math.log(3.0), -1.0, 2.0]]])
    assert torch.allclose(att.weights(t), torch.tensor([[0.8, 1.2]]), atol=1e-6)


def test_spatial_attention_pool_is_a_weighted_mean():
    pool = SpatialAttentionPool()
    x = torch.randn(2, 6, 4, 4)
    _zero(pool)  # uniform weights 1/2: the plain spatial mean
    assert torch.allclose(pool(x), x.mean(dim=(2, 3)), atol=1e-6)
    with torch.no_grad():  # a large bias on a one-hot input: weight ~1 at (1, 2) only
        pool.conv.weight.zero_()
        pool.conv.weight[0, 0, 1, 1] = 40.0
        pool.conv.bias.fill_(-20.0)
    x = torch.zeros(1, 2, 4, 4)
    x[0, :, 1, 2] = 1.0
    assert torch.allclose(pool(x), torch.ones(1, 2), atol=1e-6)


def test_hacn_zeroed_attention_equals_baseline_and_trained_attention_differs():
    torch.manual_seed(3)
    with_att = HACN(num_classes=7).eval()
    without = HACN(num_classes=7, attention=False).eval()
    without.load_state_dict(with_att.state_dict(), strict=False)
    x = torch.randn(B, 5, 3, 64, 64)
    with torch.no_grad():
        base = without(x)
        changed = with_att(x)
        _zero(with_att.self_attention)
        _zero(with_att.spatial_attention)
        neutral = with_att(x)
    assert torch.allclose(neutral, base, atol=1e-5)
    assert (changed - base).abs().max() > 1e-5
    with pytest.raises(ValueError, match="expects"):
        with_att(torch.randn(1, 4, 3, 64, 64))


# ----------------------------------------------------------------------------- WS-LGAN

def test_ws_lgan_full_size_stage_two_forward_backward_with_losses():
    torch.manual_seed(0)
    model = WSLGAN(num_classes=7)
    print(f"\nWS-LGAN parameters: {count_parameters(model):,} "
          f"(AMG {count_parameters(model.amg):,}, FE {count_parameters(model.fe):,}; "
          "paper: not given)")
    # Stage 2 (sec. IV-C): the AMG is frozen (no gradient, batch norms in eval in train mode).
    model.freeze_attention_generator()
    model.train()
    assert not model.amg.training and model.fe.training
    x = torch.randn(B, 1, 48, 48)
    out = model(x)
    c = model.fe.out_channels
    assert out.logits.shape == (B, 7)
    assert out.eyes.shape == out.mouth.shape == out.glob.shape == (B, 128)
    assert out.attention.shape == (B, 2, 12, 12)
    assert out.attention.min() >= 0 and out.attention.max() <= 1
    assert out.selection.shape == (B, 3, c)
    assert torch.allclose(out.selection.sum(dim=1), torch.ones(B, c), atol=1e-5)
    losses = ws_lgan_losses(out, torch.tensor([2, 5]), weights=(1, 1, 2, 1, 1))
    terms = (losses.contrastive_eyes, losses.contrastive_mouth, losses.contrastive_global,
             losses.softmax_1, losses.softmax_2)
    assert all(torch.isfinite(t) and t.ndim == 0 for t in (losses.total, *terms))
    expected = sum(w * t for w, t in zip((1, 1, 2, 1, 1), terms))
    assert torch.allclose(losses.total, expected)
    _assert_trained(model, losses.total)
    assert all(p.grad is None for p in model.amg.parameters())


def test_amg_full_size_stage_one_forward_backward():
    torch.manual_seed(4)
    model = WSLGAN(num_classes=7)
    lm = torch.zeros(B, 68, 2)
    lm[:, 17:27] = torch.tensor([15.0, 14.0])
    lm[:, 36:48] = torch.tensor([15.0, 18.0])
    lm[:, 45] = torch.tensor([33.0, 18.0])
    lm[:, 48:68] = torch.tensor([24.0, 36.0])
    targets = landmark_attention_targets(lm, 12)
    amg_out = model.amg(torch.randn(B, 1, 48, 48))
    assert amg_out.cam.shape == targets.shape == (B, 2, 12, 12)
    assert torch.allclose(amg_out.logits, amg_out.cam.mean(dim=(2, 3)))
    loss = amg_target_loss(amg_out.cam, targets)
    assert torch.isfinite(loss)
    _assert_trained(model.amg, loss)
    assert all(p.grad is None for p in model.fe.parameters())


def test_landmark_targets_hand_values():
    lm = torch.zeros(1, 68, 2)
    lm[0, 17:27] = lm[0, 36:48] = torch.tensor([9.5, 17.5])
    lm[0, 48:68] = torch.tensor([29.5, 37.5])
    # 12x12 map over a 48x48 image: cell (i, j) centred at pixel (4j + 1.5, 4i + 1.5).
    t = landmark_attention_targets(lm, 12, image_size=48, sigma_px=3.0)
    assert t.shape == (1, 2, 12, 12) and t.dtype == torch.float32
    assert t[0, 0, 4, 2] == pytest.approx(1.0)                        # on the eye point
    assert t[0, 0, 4, 3] == pytest.approx(math.exp(-16 / 18), rel=1e-5)   # 4 px away
    assert t[0, 0, 5, 3] == pytest.approx(math.exp(-32 / 18), rel=1e-5)   # 4 px, 4 px
    assert t[0, 1, 9, 7] == pytest.approx(1.0)                        # on the mouth point
    assert t[0, 1, 4, 2] == pytest.approx(math.exp(-(20**2 + 20**2) / 18), abs=1e-12)
    # sigma from the outer eye corners: 20 px apart, 0.15 * 20 = 3 px -> same blob widths.
    lm[0, 36] = torch.tensor([0.0, 17.5])
    lm[0, 45] = torch.tensor([20.0, 17.5])
    t2 = landmark_attention_targets(lm, 12, image_size=48)
    assert t2[0, 1, 9, 8] == pytest.approx(math.exp(-16 / 18), rel=1e-5)


def test_landmark_targets_reject_bad_input():
    good = torch.rand(2, 68, 2) * 48
    with pytest.raises(InputError, match="expected shape"):
        landmark_attention_targets(good[:, :67], 12)
    bad = good.clone()
    bad[1, 50, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        landmark_attention_targets(bad, 12)
    flat = torch.full((1, 68, 2), 20.0)
    with pytest.raises(InputError, match="coincide"):
        landmark_attention_targets(flat, 12)
    with pytest.raises(InputError, match="sigma_px"):
        landmark_attention_targets(good, 12, sigma_px=0.0)


def test_normalize_attention_min_max_and_flat_maps():
    cam = torch.tensor([0.0, 1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 5.0]).view(1, 2, 2, 2)
    out = normalize_attention(cam)
    assert torch.allclose(out[0, 0].flatten(), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    assert torch.equal(out[0, 1], torch.ones(2, 2))  # flat: attend everywhere, no NaN


def test_contrastive_loss_hand_values_and_finite_gradient():
    f1 = torch.zeros(3, 2)
    f2 = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    same = torch.tensor([True, False, False])
    # Pairs: similar at d = 5 -> 12.5; dissimilar at d = 5 -> (10 - 5)^2 / 2 = 12.5;
    # dissimilar and coincident -> 10^2 / 2 = 50.
    loss = contrastive_loss(f1, f2, same, margin=10.0)
    assert loss.item() == pytest.approx((12.5 + 12.5 + 50.0) / 3, rel=1e-6)
    loss.backward()
    assert torch.isfinite(f2.grad).all()
    assert contrastive_loss(f1[:2], f2[:2].detach(), torch.tensor([False, False]), margin=4.0) == 0


def test_ws_lgan_losses_need_pairs():
    out = WSLGANOutput(*(torch.zeros(3, 4) for _ in range(4)), attention=torch.ones(3, 2, 1, 1),
                       selection=torch.ones(3, 3, 4))
    with pytest.raises(ValueError, match="even"):
        ws_lgan_losses(out, torch.tensor([0, 1, 2]))


def test_sfu_with_zero_selection_averages_the_branches():
    sfu = SelectiveFeatureUnit(32).eval()
    with torch.no_grad():
        sfu.select.weight.zero_()
    fe, fm, fg = (torch.randn(2, 32, 4, 4) for _ in range(3))
    v, w = sfu(fe, fm, fg)
    assert torch.allclose(w, torch.full((2, 3, 32), 1 / 3))
    assert torch.allclose(v, (fe + fm + fg) / 3, atol=1e-6)


def test_ws_lgan_attention_changes_the_output():
    torch.manual_seed(5)
    model = WSLGAN(num_classes=7, growth=8).eval()
    x = torch.randn(B, 1, 48, 48)
    with torch.no_grad():
        learned = model(x)
        ones = model(x, attention=torch.ones(B, 2, 12, 12))
        # Uniform attention makes F_e = F_m = F_g, so the SFU returns F_g whatever it selects.
        fg = model.fe(x)
        plain = model.classifier(fg.mean(dim=(2, 3)))
    assert torch.allclose(ones.logits, plain, atol=1e-5)
    assert (learned.logits - ones.logits).abs().max() > 1e-5
    assert (learned.eyes - ones.eyes).abs().max() > 1e-5
    with pytest.raises(ValueError, match="attention must be"):
        model(x, attention=torch.ones(B, 2, 6, 6))
