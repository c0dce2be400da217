"""WS-LGAN stage 1: the attention generator learns landmark maps, then is frozen."""
import torch

from train.attention_stage import fit_attention_generator
from train.models.ws_lgan import WSLGAN, amg_target_loss, landmark_attention_targets


def _batches(n_batches=2, b=4, seed=0):
    """Faces drawn as bright blobs exactly where the eye and mouth targets are: the map
    from image to target is learnable by construction."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        lm = torch.tensor([[12.0 + 24 * (i % 2 == 1), 16.0] for i in range(68)]).repeat(b, 1, 1)
        lm += 3.0 * torch.randn(b, 1, 2, generator=g)       # the face moves as a whole
        lm[:, 48:68, 1] += 16.0                               # mouth below the eyes
        lm[:, 36, 0], lm[:, 45, 0] = lm[:, 36, 0] - 4, lm[:, 45, 0] + 4
        x = landmark_attention_targets(lm, 48, image_size=48, sigma_px=3.0).sum(1, keepdim=True)
        out.append({"x": x.clamp(0, 1), "landmarks": lm, "label": torch.zeros(b, dtype=torch.long)})
    return out


def _target_loss(model, batches):
    model.amg.eval()
    with torch.no_grad():
        losses = []
        for bt in batches:
            cam = model.amg(bt["x"]).cam
            losses.append(float(amg_target_loss(cam, landmark_attention_targets(bt["landmarks"], tuple(cam.shape[2:]), image_size=48))))
    return sum(losses) / len(losses)


def test_generator_fits_landmark_targets_then_is_frozen():
    torch.manual_seed(0)
    model = WSLGAN(num_classes=3, growth=4, amg_blocks=(1, 1, 1), fe_blocks=(1, 1, 1))
    data = _batches()
    before = _target_loss(model, data)
    history = fit_attention_generator(model, data, epochs=25, lr=3e-3, seed=0)
    assert len(history) == 25 and history[-1] < history[0]
    assert _target_loss(model, data) < 0.8 * before
    assert all(not p.requires_grad for p in model.amg.parameters())
    model.train()
    assert not model.amg.training and model.fe.training     # frozen generator stays in eval mode
