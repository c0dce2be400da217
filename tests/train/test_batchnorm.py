"""Precise batch-norm statistics: plain averages of batch statistics, computed by hand."""
import pytest
import torch
from torch import nn

from train.batchnorm import recompute_bn_statistics


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(3)
        self.frozen = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.frozen(self.bn(x))

    def train(self, mode=True):  # like WS-LGAN's frozen generator: stays in eval mode
        super().train(mode)
        self.frozen.eval()
        return self


def batches():
    g = torch.Generator().manual_seed(0)
    sizes = [4, 6, 1, 5]   # the batch of one is skipped
    return [{"x": 3.0 + 2.0 * torch.randn(n, 3, generator=g), "label": torch.zeros(n, dtype=torch.long)}
            for n in sizes]


def run(net, bs, max_batches=10):
    return recompute_bn_statistics(net, bs, lambda m, b: m(b["x"]), max_batches)


def test_statistics_are_the_plain_average_of_batch_statistics():
    net = Net().eval()
    frozen_before = {k: v.clone() for k, v in net.frozen.state_dict().items()}
    weights_before = net.bn.weight.detach().clone()
    bs = batches()
    assert run(net, bs) == 3
    used = [b["x"] for b in bs if len(b["x"]) > 1]
    mean = torch.stack([x.mean(0) for x in used]).mean(0)
    var = torch.stack([x.var(0, unbiased=True) for x in used]).mean(0)   # torch keeps the unbiased
    torch.testing.assert_close(net.bn.running_mean, mean)
    torch.testing.assert_close(net.bn.running_var, var)
    assert net.bn.momentum == 0.1 and not net.training          # restored
    assert torch.equal(net.bn.weight, weights_before)
    for k, v in net.frozen.state_dict().items():                 # eval-mode layer untouched
        assert torch.equal(v, frozen_before[k]), k


def test_max_batches_limits_and_no_usable_batch_keeps_statistics():
    net = Net()
    bs = batches()
    assert run(net, bs, max_batches=1) == 1
    torch.testing.assert_close(net.bn.running_mean, bs[0]["x"].mean(0))
    before = net.bn.running_mean.clone(), net.bn.running_var.clone()
    assert run(net, [bs[2]]) == 0        # only a batch of one: nothing to average
    assert torch.equal(net.bn.running_mean, before[0]) and torch.equal(net.bn.running_var, before[1])
    assert net.training
    with pytest.raises(ValueError, match="max_batches"):
        run(net, bs, max_batches=0)
