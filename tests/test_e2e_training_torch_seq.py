"""More whole training loops against PyTorch in float64 (test_e2e_training_torch.py's
sequel, skipped without torch): an LSTM on padded batches trained by CTC with clipped Adam,
and a BatchNorm inside a Shared encoder (running statistics moved once per branch, as a
torch module called twice), at momentum 0.1 and None (the cumulative average)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from _e2e_util import TOL, f64, losses_agree, rel
from _torch_util import numpy_of, one_thread, t64

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, optim, random

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def test_lstm_ctc_on_padded_batches_clipped_adam() -> None:
    steps, n, t, feat, hidden, classes, s = 20, 4, 8, 3, 5, 4, 3
    model = L.Sequential(L.LSTM(hidden, lengths=True), L.Dense(classes), L.LogSoftmax())
    _, p = model.init(random.key(0), ((None, t, feat), (None,)))
    p = f64(p)
    lstm, lin = nn.LSTM(feat, hidden, batch_first=True).double(), nn.Linear(hidden, classes)
    lin = lin.double()
    with torch.no_grad():
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            getattr(lstm, f"{name.replace('w_', 'weight_').replace('b_', 'bias_')}_l0").copy_(
                t64(p[0][name].T))
        lin.weight.copy_(t64(p[1]["w"].T))
        lin.bias.copy_(t64(p[1]["b"]))
    tparams = [*lstm.parameters(), *lin.parameters()]
    opt = optim.chain(optim.clip_by_global_norm(1.0, eps=1e-6), optim.adam(5e-2))
    ostate = opt.init(p)
    vg = fd.value_and_grad(model, losses.ctc)
    topt = torch.optim.Adam(tparams, lr=5e-2)
    rnn = nn.utils.rnn
    ours, theirs = [], []
    for i in range(steps):
        x = random.normal(random.key(10 + i), (n, t, feat), np.float64)
        il = np.asarray(random.randint(random.key(20 + i), (n,), 5, t + 1))
        tl = np.asarray(random.randint(random.key(30 + i), (n,), 1, s + 1))
        labels = np.asarray(random.randint(random.key(40 + i), (n, s), 1, classes))
        value, g = vg(p, (x, il), (labels, il, tl))  # lengths travel with the target
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        topt.zero_grad()
        packed = rnn.pack_padded_sequence(t64(x), torch.tensor(il), batch_first=True,
                                          enforce_sorted=False)
        out, _ = rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=t)
        loss = nn.functional.ctc_loss(lin(out).log_softmax(-1).transpose(0, 1),
                                      torch.tensor(labels), torch.tensor(il), torch.tensor(tl))
        loss.backward()
        nn.utils.clip_grad_norm_(tparams, 1.0)
        topt.step()
        theirs.append(loss.item())
    losses_agree(ours, theirs)
    assert rel(p, ({"w_ih": numpy_of(lstm.weight_ih_l0).T, "w_hh": numpy_of(lstm.weight_hh_l0).T,
                    "b_ih": numpy_of(lstm.bias_ih_l0), "b_hh": numpy_of(lstm.bias_hh_l0)},
                   {"w": numpy_of(lin.weight).T, "b": numpy_of(lin.bias)}, ())) < TOL


@pytest.mark.parametrize("momentum", [0.1, None])
def test_shared_batchnorm_trains_as_one_torch_module_called_twice(
        momentum: float | None) -> None:
    steps, n = 20, 6
    encoder = L.Sequential(L.Dense(5), L.BatchNorm(momentum=momentum), L.ReLU())
    model = L.Sequential(L.Shared(encoder), L.FanInConcat(), L.Dense(1))
    _, p, st = model.init(random.key(0), ((None, 3), (None, 3)))
    p, st = f64(p), f64(st)
    dense, bn = nn.Linear(3, 5).double(), nn.BatchNorm1d(5, momentum=momentum).double()
    head = nn.Linear(10, 1).double()
    with torch.no_grad():
        for m, w in ((dense, p[0][0]), (head, p[2])):
            m.weight.copy_(t64(w["w"].T))
            m.bias.copy_(t64(w["b"]))
    opt = optim.sgd(0.05, momentum=0.9)
    ostate = opt.init(p)
    topt = torch.optim.SGD([*dense.parameters(), *bn.parameters(), *head.parameters()],
                           lr=0.05, momentum=0.9)
    vg = fd.value_and_grad(model, losses.mse)
    ours, theirs = [], []
    for i in range(steps):
        a = random.normal(random.key(10 + i), (n, 3), np.float64)
        b = random.normal(random.key(50 + i), (n, 3), np.float64)
        y = random.normal(random.key(90 + i), (n, 1), np.float64)
        (value, st), g = vg(p, (a, b), y, state=st, train=True)
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        topt.zero_grad()
        out = head(torch.cat([torch.relu(bn(dense(t64(v)))) for v in (a, b)], -1))
        loss = nn.functional.mse_loss(out, t64(y))
        loss.backward()
        topt.step()
        theirs.append(loss.item())
    losses_agree(ours, theirs)
    stats = st[0][0][1]
    assert rel(p, (({"w": numpy_of(dense.weight).T, "b": numpy_of(dense.bias)},
                    {"scale": numpy_of(bn.weight), "bias": numpy_of(bn.bias)}, ()), (),
                   {"w": numpy_of(head.weight).T, "b": numpy_of(head.bias)})) < TOL
    assert rel({k: stats[k] for k in ("mean", "var")},
               {"mean": numpy_of(bn.running_mean), "var": numpy_of(bn.running_var)}) < TOL
    if momentum is None:  # the cumulative average counts both branches' batches
        assert int(stats["count"]) == int(bn.num_batches_tracked) == 2 * steps
