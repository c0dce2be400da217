"""Training loop, checkpoints and configs.

Truth: a tiny problem whose classes are separable by construction (three Gaussian blobs
10 standard deviations apart), a model whose logits are its input (so predictions, the
confusion matrix and the cross-entropy are computed by hand), and equality with a run
that was never interrupted (bit for bit on CPU).  The papers' protocol values are
checked against the numbers printed in their training sections.
"""
from __future__ import annotations

import json
import math
import random
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from data_schema.errors import InputError
from train.augment import augment_for
from train.config import PAPER_CONFIGS, SMALL_CPU_CONFIGS, TrainConfig, paper_config
from train.data import make_loader
from train.loop import (
    EvalResult,
    build_model,
    cross_entropy_loss,
    evaluate,
    fit,
    load_checkpoint,
    loss_fn_for,
    model_inputs,
    ws_lgan_loss,
)
from train.models import MODELS, create_model, load_pretrained

N_CLASSES = 3
CENTRES = torch.tensor([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0]])


class Blobs(Dataset):
    """Three 2-D Gaussian blobs (std 0.4, centres >= 6 apart): separable by construction.

    Each read adds noise from numpy's and python's global generators (their states must
    resume) and records the
    epoch that ``set_epoch`` gave it."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % N_CLASSES
        self.x = CENTRES[self.y] + 0.4 * torch.randn(n, 2, generator=g)
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        jitter = torch.from_numpy(np.random.normal(0.0, 0.01, 2).astype(np.float32))
        jitter *= 1.0 + random.random()  # python's RNG must resume too
        return {"x": self.x[i] + jitter, "label": self.y[i]}


class TinyNet(nn.Module):
    """MLP with batch norm and dropout (its buffers and its RNG use must resume exactly)."""

    def __init__(self, num_classes: int = N_CLASSES):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                                  nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def noise_augment(batch, gen, train=True):
    """A random augmentation drawing from the loop's generator (its state must resume)."""
    if not train:
        return batch
    return {**batch, "x": batch["x"] + 0.05 * torch.randn(batch["x"].shape, generator=gen)}


def cfg_for(**changes) -> TrainConfig:
    base = TrainConfig(model="tiny", model_cfg={"num_classes": N_CLASSES}, optimizer="sgd", lr=0.1,
                       momentum=0.9, weight_decay=1e-4, milestones=(2, 3), gamma=0.5, epochs=4,
                       batch_size=8, seed=3, amp=True, device="cpu")
    return base.replace(**changes)


def tiny(cfg: TrainConfig) -> TinyNet:
    torch.manual_seed(cfg.seed)
    return TinyNet()


def loaders(cfg: TrainConfig, val: Dataset | None = None):
    train = make_loader(Blobs(48, seed=1), cfg.batch_size, True, 0, cfg.seed)
    val_loader = make_loader(val if val is not None else Blobs(30, seed=2), 16, False, 0, cfg.seed)
    return train, val_loader


# ------------------------------------------------------------------------ fit

def test_fit_learns_a_separable_problem(tmp_path):
    cfg = cfg_for(epochs=6)
    model = tiny(cfg)
    train, val = loaders(cfg)
    res = fit(model, train, val, cfg, tmp_path, augment=noise_augment)
    h = res.history
    assert [r["epoch"] for r in h] == list(range(1, 7))
    assert set(h[0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"}
    assert h[-1]["val_acc"] == 1.0 and h[-1]["train_acc"] >= 0.95
    assert h[-1]["val_loss"] < h[0]["val_loss"]
    # MultiStepLR: lr 0.1 in epochs 1-2, x0.5 after epoch 2 and again after epoch 3
    assert [r["lr"] for r in h] == pytest.approx([0.1, 0.1, 0.05, 0.025, 0.025, 0.025])
    assert all(r["seconds"] > 0 and r["train_samples_per_second"] > 0 for r in h)
    assert train.dataset.epochs_seen == [0, 1, 2, 3, 4, 5]
    assert (res.device, res.amp, res.resumed_from) == ("cpu", False, 0)

    saved = json.loads(res.config_path.read_text())
    assert saved["device"] == "cpu" and saved["amp"] is False  # resolved: no AMP on CPU
    assert TrainConfig.from_dict(saved) == cfg.replace(amp=False)

    best = load_checkpoint(res.best_path)
    assert best["epoch"] == res.best_epoch and best["val_acc"] == res.best_val_acc == 1.0
    # the best checkpoint loads as plain weights into a fresh model (weights_only)
    fresh = TinyNet()
    assert load_pretrained(fresh, res.best_path).complete
    torch.testing.assert_close(fresh.state_dict(), best["model"], rtol=0, atol=0)
    assert evaluate(fresh, val, N_CLASSES).accuracy == best["val_acc"]


def _run(cfg, out, epochs_first=None):
    """fit for cfg.epochs, optionally as two calls: epochs_first, then resume to the end."""
    if epochs_first is not None:
        model = tiny(cfg)
        train, val = loaders(cfg)
        fit(model, train, val, cfg.replace(epochs=epochs_first), out, augment=noise_augment)
    model = tiny(cfg)  # a new process would start from a fresh model: resume must overwrite it
    train, val = loaders(cfg)
    return model, fit(model, train, val, cfg, out, augment=noise_augment)


@pytest.mark.parametrize("optimizer,precise_bn", [("sgd", 0), ("adam", 0), ("sgd", 3)])
def test_resume_equals_a_straight_run_bit_for_bit(tmp_path, optimizer, precise_bn):
    cfg = cfg_for(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 0.01,
                  nesterov=optimizer == "sgd", epochs=4, precise_bn_batches=precise_bn)
    straight, res_a = _run(cfg, tmp_path / "straight")
    resumed, res_b = _run(cfg, tmp_path / "resumed", epochs_first=2)
    assert (res_a.resumed_from, res_b.resumed_from) == (0, 2)
    for (k, a), (k2, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    drop = lambda h: [{k: v for k, v in r.items() if k not in ("seconds", "train_samples_per_second")}
                      for r in h]
    assert drop(res_a.history) == drop(res_b.history)
    assert res_a.best_epoch == res_b.best_epoch
    opt_a = load_checkpoint(res_a.last_path)["optimizer"]["state"]
    opt_b = load_checkpoint(res_b.last_path)["optimizer"]["state"]
    for i in opt_a:
        for name in opt_a[i]:
            assert torch.equal(torch.as_tensor(opt_a[i][name]), torch.as_tensor(opt_b[i][name]))


def test_resume_without_the_saved_states_would_differ(tmp_path):
    """Control for the test above: restarting from last.pt's weights alone (fresh RNGs,
    optimizer and loader) does not give the straight run, so the equality is not trivial."""
    cfg = cfg_for(epochs=4)
    straight, _ = _run(cfg, tmp_path / "a")
    model = tiny(cfg)
    train, val = loaders(cfg)
    fit(model, train, val, cfg.replace(epochs=2), tmp_path / "b", augment=noise_augment)
    model.load_state_dict(load_checkpoint(tmp_path / "b" / "last.pt")["model"])
    train, val = loaders(cfg)
    fit(model, train, val, cfg.replace(epochs=2), tmp_path / "c", augment=noise_augment, resume=False)
    assert not all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), model.state_dict().values()))


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = cfg_for(epochs=1)
    model = tiny(cfg)
    fit(model, *loaders(cfg), cfg, tmp_path)
    with pytest.raises(ValueError, match=r"config changed \(lr: 0.1 -> 0.2\)"):
        fit(tiny(cfg), *loaders(cfg), cfg.replace(lr=0.2, epochs=2), tmp_path)
    # resume=False starts over in the same directory
    res = fit(tiny(cfg), *loaders(cfg), cfg.replace(lr=0.2, epochs=1), tmp_path, resume=False)
    assert res.resumed_from == 0 and len(res.history) == 1


class EpochLabels:
    """Validation batches whose labels are right only in one epoch (``good``), shifted by
    one class otherwise: validation accuracy peaks at that epoch whatever the test fold
    would say."""

    def __init__(self, data: Blobs, good: int):
        self.data, self.good, self.calls = data, good, 0

    def __iter__(self):
        self.calls += 1
        y = self.data.y if self.calls == self.good else (self.data.y + 1) % N_CLASSES
        yield {"x": self.data.x, "label": y}


def test_best_checkpoint_is_chosen_by_validation_accuracy(tmp_path):
    cfg = cfg_for(epochs=5)
    val = EpochLabels(Blobs(30, seed=2), good=3)
    res = fit(tiny(cfg), loaders(cfg)[0], val, cfg, tmp_path / "run")
    accs = [r["val_acc"] for r in res.history]
    assert int(np.argmax(accs)) + 1 == 3 == res.best_epoch
    assert accs[2] > 0.9 and max(accs[3:]) < 0.1  # later epochs are better on the true labels
    # best.pt holds epoch 3's weights: those of a run stopped after 3 epochs
    three = fit(tiny(cfg), loaders(cfg)[0], EpochLabels(Blobs(30, seed=2), good=3),
                cfg.replace(epochs=3), tmp_path / "three")
    best, last3 = load_checkpoint(res.best_path), load_checkpoint(three.last_path)
    assert best["epoch"] == 3
    assert all(torch.equal(best["model"][k], last3["model"][k]) for k in last3["model"])
    last = load_checkpoint(res.last_path)
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_a_diverging_run_stops_with_a_clear_error(tmp_path):
    class NaNNet(TinyNet):
        def forward(self, x):
            return super().forward(x) * math.nan

    cfg = cfg_for(epochs=1)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1"):
        fit(NaNNet(), *loaders(cfg), cfg, tmp_path)


# ------------------------------------------------------------------------ evaluate

class Logits(nn.Module):
    """Returns its input as logits; one dummy parameter so it has a device."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + 0 * self.dummy


def test_evaluate_on_known_outputs():
    # 5 samples, 3 classes; logits log(p) so softmax gives p exactly
    p = torch.tensor([[0.7, 0.2, 0.1],   # actual 0 -> 0
                      [0.5, 0.25, 0.25],  # actual 1 -> 0
                      [0.1, 0.8, 0.1],   # actual 1 -> 1
                      [0.2, 0.3, 0.5],   # actual 2 -> 2
                      [0.6, 0.3, 0.1]])  # actual 0 -> 0
    y = torch.tensor([0, 1, 1, 2, 0])
    batches = [{"x": p[:2].log(), "label": y[:2]}, {"x": p[2:].log(), "label": y[2:]}]
    res = evaluate(Logits(), batches, 3)
    assert isinstance(res, EvalResult) and res.n == 5
    np.testing.assert_array_equal(res.confusion, [[2, 0, 0], [1, 1, 0], [0, 0, 1]])
    assert res.accuracy == pytest.approx(4 / 5)
    np.testing.assert_allclose(res.per_class_recall, [1.0, 0.5, 1.0])
    ce = -(math.log(0.7) + math.log(0.25) + math.log(0.8) + math.log(0.5) + math.log(0.6)) / 5
    assert res.loss == pytest.approx(ce, rel=1e-6)
    np.testing.assert_array_equal(res.actual, [0, 1, 1, 2, 0])
    np.testing.assert_array_equal(res.predicted, [0, 0, 1, 2, 0])
    assert res.samples_per_second > 0
    with pytest.raises(ValueError, match="no sample"):
        evaluate(Logits(), [], 3)


def test_evaluate_restores_training_mode_and_applies_eval_augmentation():
    model = Logits().train()
    seen = []

    def aug(batch, gen, train=True):
        seen.append(train)
        return {**batch, "x": batch["x"] * 2}  # doubling logits keeps the argmax

    res = evaluate(model, [{"x": torch.eye(3), "label": torch.arange(3)}], 3, augment=aug)
    assert model.training and seen == [False] and res.accuracy == 1.0


# ------------------------------------------------------------------------ inputs, hooks

def test_model_inputs_follow_input_spec():
    class Positional(nn.Module):  # AMDFN-like: spec name "maps", forward(x)
        input_spec: ClassVar = {"maps": (8, 4, 4)}

        def forward(self, x):
            return x

    class Keywords(nn.Module):  # FFNet-M-like: forward parameters named as the spec
        input_spec: ClassVar = {"depth": (1, 4, 4), "mask56": (2, 2)}

        def forward(self, depth, mask56=None):
            return depth

    b = {"maps": torch.zeros(1), "depth": torch.ones(1), "mask56": torch.ones(2), "label": 0,
         "valid": torch.ones(1), "x": torch.zeros(3)}
    args, kwargs = model_inputs(Positional(), b)
    assert args[0] is b["maps"] and kwargs == {}
    args, kwargs = model_inputs(Keywords(), b)
    assert args == () and set(kwargs) == {"depth", "mask56"}
    args, kwargs = model_inputs(TinyNet(), b)  # no input_spec: "x"
    assert set(kwargs) == {"x"}
    with pytest.raises(KeyError, match="none of the inputs"):
        model_inputs(Positional(), {"label": 0})


def test_ws_lgan_hook_pairs_the_batch_and_evaluates_on_softmax():
    from train.models.ws_lgan import WSLGANOutput, ws_lgan_losses

    torch.manual_seed(0)
    b, d = 5, 4
    out = WSLGANOutput(logits=torch.randn(b, 3), eyes=torch.randn(b, d), mouth=torch.randn(b, d),
                       glob=torch.randn(b, d), attention=torch.rand(b, 2, 3, 3),
                       selection=torch.rand(b, 3, 6))
    y = torch.tensor([0, 1, 2, 0, 1])
    loss, logits = ws_lgan_loss(out, y, {}, False)
    assert logits is out.logits
    assert float(loss) == pytest.approx(float(nn.functional.cross_entropy(out.logits, y)))
    weights = (1.0, 1.0, 2.0, 1.0, 1.0)
    loss, _ = ws_lgan_loss(out, y, {}, True, weights=weights)
    # odd batch: the first 4 samples form pairs (0, 2) and (1, 3)
    want = ws_lgan_losses(WSLGANOutput(*(getattr(out, f)[:4] for f in out.__dataclass_fields__)),
                          y[:4], weights=weights).total
    assert float(loss) == pytest.approx(float(want))
    # the default hook refuses a non-tensor output without .logits
    with pytest.raises(TypeError, match="loss_fn"):
        cross_entropy_loss(object(), y, {}, True)


def test_fit_trains_ws_lgan_through_its_hook(tmp_path):
    cfg = SMALL_CPU_CONFIGS["ws_lgan"].replace(model_cfg={"num_classes": 3, "growth": 4},
                                               epochs=1, batch_size=4)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(8) % 3
    samples = [{"x": torch.rand(1, 48, 48, generator=g), "label": y[i]} for i in range(8)]
    train = make_loader(samples, 4, True, 0, cfg.seed)
    val = make_loader(samples[:4], 4, False, 0, cfg.seed)
    res = fit(build_model(cfg), train, val, cfg, tmp_path, augment=augment_for("ws_lgan"))
    assert len(res.history) == 1 and math.isfinite(res.history[0]["train_loss"])


# ------------------------------------------------------------------------ configs

def test_config_round_trip_and_validation():
    cfg = PAPER_CONFIGS["ws_lgan"]
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and hash(again) == hash(cfg)
    with pytest.raises(TypeError):
        cfg.model_cfg["num_classes"] = 3  # frozen all the way down
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"model": "amdfn", "learning_rate": 0.1})
    for bad, match in [({"optimizer": "rmsprop"}, "optimizer"), ({"lr": 0.0}, "lr"),
                       ({"milestones": (5, 3)}, "milestones"), ({"nesterov": True}, "nesterov"),
                       ({"device": "tpu"}, "device"), ({"val_fraction": 1.0}, "val_fraction"),
                       ({"precise_bn_batches": -1}, "precise_bn_batches"),
                       ({"pretrain_epochs": -1}, "pretrain_epochs")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(model="amdfn", **bad)
    with pytest.raises(TypeError, match="epochs"):
        TrainConfig(model="amdfn", epochs=2.0)
    with pytest.raises(ValueError, match=r"loss_cfg keys \['lambda'\] not accepted by ws_lgan_loss"):
        loss_fn_for(PAPER_CONFIGS["ws_lgan"].replace(loss_cfg={"lambda": 2}))


def test_paper_configs_match_the_papers():
    amdfn, ffnet, stcam = PAPER_CONFIGS["amdfn"], PAPER_CONFIGS["ffnet_m"], PAPER_CONFIGS["stcam"]
    assert (amdfn.optimizer, amdfn.lr, amdfn.epochs, amdfn.batch_size) == ("sgd", 0.01, 70, 20)
    assert (ffnet.optimizer, ffnet.lr, ffnet.epochs) == ("adam", 1e-4, 70)
    assert (stcam.optimizer, stcam.nesterov, stcam.momentum, stcam.lr, stcam.milestones, stcam.gamma,
            stcam.epochs, stcam.batch_size, stcam.weight_decay) == ("sgd", True, 0.9, 1e-3, (40, 90), 0.1,
                                                                    100, 16, 0.01)
    hacn_ck, hacn_afew = paper_config("hacn", "ckplus"), paper_config("hacn", "afew")
    assert (hacn_ck.lr, hacn_ck.epochs, hacn_ck.momentum, hacn_ck.weight_decay, hacn_ck.batch_size,
            hacn_ck.gamma, hacn_ck.milestones) == (1e-3, 100, 0.9, 1e-4, 16, 0.8, (20, 40, 60, 80))
    assert (hacn_afew.lr, hacn_afew.epochs) == (1e-4, 200)
    ws = paper_config("ws_lgan", "oulu")
    assert (ws.lr, ws.momentum, ws.weight_decay, ws.batch_size) == (0.01, 0.9, 5e-4, 100)
    assert ws.milestones == (ws.epochs // 2, ws.epochs * 3 // 4)
    assert list(ws.loss_cfg["weights"]) == [1, 1, 5, 1, 1]
    assert list(paper_config("ws_lgan", "ckplus").loss_cfg["weights"]) == [1, 1, 2, 1, 1]
    assert paper_config("amdfn", "bosphorus").model_cfg["num_classes"] == 6
    with pytest.raises(ValueError, match="known"):
        paper_config("amdfn", "afew")
    for name in ("amdfn", "ffnet_m", "stcam", "hacn", "ws_lgan"):
        assert name in MODELS and PAPER_CONFIGS[name].source
        assert SMALL_CPU_CONFIGS[name].device == "cpu"


@pytest.mark.parametrize("name", ["amdfn", "ffnet_m", "stcam", "hacn", "ws_lgan"])
def test_small_configs_build_their_models(name):
    cfg = SMALL_CPU_CONFIGS[name]
    model = build_model(cfg)
    assert type(model) is type(create_model(name, **cfg.to_dict()["model_cfg"]))


# ------------------------------------------------------------------------ files, devices

class Payload:
    """An arbitrary object: a checkpoint holding one must not be unpickled."""


def test_checkpoints_are_tensors_only(tmp_path):
    torch.save({"format": "fermaps-train-checkpoint", "version": 1, "evil": Payload()}, tmp_path / "x.pt")
    with pytest.raises(InputError, match="not a readable tensors-only checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"state_dict": {}}, tmp_path / "y.pt")
    with pytest.raises(InputError, match="not a fermaps training checkpoint"):
        load_checkpoint(tmp_path / "y.pt")


def test_cuda_request_without_a_gpu_is_an_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = cfg_for(device="cuda")
    with pytest.raises(ValueError, match="no CUDA device"):
        fit(tiny(cfg), *loaders(cfg), cfg, tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_run_and_resume(tmp_path):
    cfg = cfg_for(device="auto", amp=True, epochs=4)
    model = tiny(cfg)
    first = fit(model, *loaders(cfg), cfg.replace(epochs=2), tmp_path)
    assert (first.device, first.amp) == ("cuda", True)
    last = load_checkpoint(first.last_path)
    assert last["scaler"] and last["scaler"]["scale"] > 0  # GradScaler state is saved
    assert json.loads(first.config_path.read_text())["amp"] is True
    res = fit(tiny(cfg), *loaders(cfg), cfg, tmp_path)
    assert res.resumed_from == 2 and len(res.history) == 4
    assert res.history[-1]["val_acc"] >= 0.9
    assert all(torch.isfinite(v).all() for v in load_checkpoint(res.last_path)["model"].values()
               if v.is_floating_point())


def test_precise_bn_in_fit_uses_training_samples_as_evaluation_sees_them(tmp_path):
    """After fit with precise BN, the saved running mean of the batch norm equals the mean
    of the first layer's outputs over the training set (batches of 8 of 48 samples, equal
    sizes, so the average of batch means is the overall mean), computed here by hand from
    the saved weights and the stored samples (no augmentation: evaluation sees them bare)."""
    cfg = cfg_for(epochs=2, precise_bn_batches=100)
    model = tiny(cfg)
    train, val = loaders(cfg)
    res = fit(model, train, val, cfg, tmp_path, augment=noise_augment)
    state = load_checkpoint(res.last_path)["model"]
    torch.manual_seed(0)
    np.random.seed(0)
    x = torch.stack([train.dataset[i]["x"] for i in range(len(train.dataset))])  # jitter 0.01
    h = x @ state["body.0.weight"].T + state["body.0.bias"]
    torch.testing.assert_close(state["body.1.running_mean"], h.mean(0), atol=0.05, rtol=0)
    batch_vars = torch.stack([h[i:i + 8].var(0) for i in range(0, 48, 8)])
    torch.testing.assert_close(state["body.1.running_var"], batch_vars.mean(0), rtol=0.05, atol=0.01)
