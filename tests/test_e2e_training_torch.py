"""Whole training loops against PyTorch in float64 (skipped without torch): one init,
copied into torch's modules (NHWC -> NCHW, HWIO -> OIHW, Dense (in, out) -> Linear's
(out, in)), the same batches, 20-30 steps; the loss at every step and the params (and
BatchNorm's running statistics) at the end agree to 1e-10 relative. Each scenario composes
features checked one by one elsewhere: layers, a loss with options, an optimizer chain, a
schedule."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _e2e_util import TOL, f64, losses_agree, rel, tel_torch
from _torch_util import block_params, numpy_of, one_thread, t64

import funcdl as fd
from funcdl import layers as L
from funcdl import losses, optim, random, tree

torch = pytest.importorskip("torch")
nn = torch.nn


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_thread():
        yield


def load(module: Any, named: dict[str, Any]) -> Any:
    """``module`` in float64 with its params (and buffers) set from ``named`` arrays."""
    module = module.double()
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if k in named:
                v.copy_(t64(named[k]))
    return module


# ---------------------------------------------------------------- 1: a CNN with AdamW

def _cnn_torch(p: Any, st: Any) -> dict[str, Any]:
    return {"0.weight": p[0]["w"].transpose(3, 2, 0, 1),
            "1.weight": p[1]["scale"], "1.bias": p[1]["bias"],
            "1.running_mean": st[1]["mean"], "1.running_var": st[1]["var"],
            "4.weight": p[4]["w"].transpose(3, 2, 0, 1), "4.bias": p[4]["b"],
            "7.weight": p[6]["w"].T, "7.bias": p[6]["b"]}


def _cnn_funcdl(m: Any) -> tuple[Any, Any]:
    s = {k: numpy_of(v) for k, v in m.state_dict().items()}
    p = ({"w": s["0.weight"].transpose(2, 3, 1, 0)},
         {"scale": s["1.weight"], "bias": s["1.bias"]}, (), (),
         {"w": s["4.weight"].transpose(2, 3, 1, 0), "b": s["4.bias"]}, (),
         {"w": s["7.weight"].T, "b": s["7.bias"]})
    return p, ((), {"mean": s["1.running_mean"], "var": s["1.running_var"]}, (), (), (), (), ())


def test_cnn_adamw_warmup_cosine_clipped() -> None:
    steps, n, classes = 25, 8, 5
    # no bias before BatchNorm: its gradient is 0 up to rounding, which Adam would scale
    # up to steps of lr·1e-9 in a direction set by the rounding alone
    model = L.Sequential(L.Conv2D(6, 3, use_bias=False), L.BatchNorm(), L.ReLU(), L.MaxPool2D(2),
                         L.Conv2D(8, 3, groups=2), L.GlobalAvgPool(), L.Dense(classes))
    _, p, st = model.init(random.key(0), (None, 8, 8, 3))
    p, st = f64(p), f64(st)
    tm = load(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1, groups=2),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes)),
              _cnn_torch(p, st))
    xs = random.normal(random.key(1), (steps, n, 8, 8, 3), np.float64)
    ys = np.asarray(random.randint(random.key(2), (steps, n), 0, classes))

    sched = optim.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=5, decay_steps=steps,
                                               end_value=1e-4)
    opt = optim.chain(optim.clip_by_global_norm(0.5, eps=1e-6),  # torch's 1e-6
                      optim.adamw(sched, weight_decay=0.05))
    ostate = opt.init(p)
    loss = functools.partial(losses.softmax_cross_entropy, label_smoothing=0.1)
    vg = fd.value_and_grad(model, loss)
    topt = torch.optim.AdamW(tm.parameters(), lr=1e-2, weight_decay=0.05)
    # torch's lr by its own formula, not funcdl's schedule: linear warmup, then cosine
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda k: k / 5 if k < 5 else 1e-2 + (
        1 - 1e-2) * 0.5 * (1 + math.cos(math.pi * (k - 5) / (steps - 5))))
    tloss = nn.CrossEntropyLoss(label_smoothing=0.1)
    ours, theirs = [], []
    for x, y in zip(xs, ys):
        (value, st), g = vg(p, x, y, state=st, train=True)
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        topt.zero_grad()
        out = tloss(tm(t64(x.transpose(0, 3, 1, 2))), torch.tensor(y))
        out.backward()
        nn.utils.clip_grad_norm_(tm.parameters(), 0.5)
        topt.step()
        tsched.step()
        theirs.append(out.item())
    losses_agree(ours, theirs)
    tp, tst = _cnn_funcdl(tm)
    assert rel(p, tp) < TOL
    assert rel(st, tst) < TOL
    tm.eval()
    x = random.normal(random.key(3), (4, 8, 8, 3), np.float64)
    y, _ = model.apply(p, x, state=st)
    with torch.no_grad():
        assert rel(y, numpy_of(tm(t64(x.transpose(0, 3, 1, 2))))) < TOL


# ------------------------------------- 2: Embedding-LSTM-Dense, padded, accumulated AMSGrad

class _Tagger(nn.Module):  # type: ignore[misc]
    def __init__(self, vocab: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim, padding_idx=0)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids: Any, lengths: Any) -> Any:
        rnn = nn.utils.rnn
        packed = rnn.pack_padded_sequence(self.emb(ids), lengths, batch_first=True,
                                          enforce_sorted=False)
        out, _ = rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                         total_length=ids.shape[1])
        return self.head(out)


def _tagger_torch(p: Any) -> dict[str, Any]:
    lstm = p[1]
    return {"emb.weight": p[0][0]["table"], "lstm.weight_ih_l0": lstm["w_ih"].T,
            "lstm.weight_hh_l0": lstm["w_hh"].T, "lstm.bias_ih_l0": lstm["b_ih"],
            "lstm.bias_hh_l0": lstm["b_hh"], "head.weight": p[2]["w"].T, "head.bias": p[2]["b"]}


@pytest.mark.parametrize("k", [1, 3])
def test_lstm_tagger_padded_amsgrad_accumulated(k: int) -> None:
    micro, n, t, vocab, dim, hidden = 24, 4, 6, 7, 5, 6
    model = L.Sequential(L.Parallel(L.Embedding(vocab, dim, padding_idx=0), L.Identity()),
                         L.LSTM(hidden, lengths=True), L.Dense(vocab))
    _, p = model.init(random.key(0), ((None, t), (None,)))
    p = f64(p)
    tm = load(_Tagger(vocab, dim, hidden), _tagger_torch(p))
    lengths = np.asarray(random.randint(random.key(1), (micro, n), 1, t + 1))
    ids = np.asarray(random.randint(random.key(2), (micro, n, t), 1, vocab))
    tags = np.asarray(random.randint(random.key(3), (micro, n, t), 0, vocab))
    pad = np.arange(t) >= lengths[..., None]
    ids, tags = np.where(pad, 0, ids), np.where(pad, -100, tags)

    opt = optim.multi_steps(optim.adam(2e-2, amsgrad=True), every_k_schedule=k)
    ostate = opt.init(p)
    vg = fd.value_and_grad(model, functools.partial(losses.softmax_cross_entropy,
                                                    ignore_index=-100))
    topt = torch.optim.Adam(tm.parameters(), lr=2e-2, amsgrad=True)
    tloss = nn.CrossEntropyLoss(ignore_index=-100)
    ours, theirs = [], []
    for i in range(micro):
        value, g = vg(p, (ids[i], lengths[i]), tags[i])
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        out = tloss(tm(torch.tensor(ids[i]), torch.tensor(lengths[i])).reshape(-1, vocab),
                    torch.tensor(tags[i]).reshape(-1))
        (out / k).backward()
        if (i + 1) % k == 0:
            topt.step()
            topt.zero_grad()
        theirs.append(out.item())
    losses_agree(ours, theirs)
    assert rel(p, f64(_tagger_funcdl(tm))) < TOL


def _tagger_funcdl(m: Any) -> Any:
    s = {k: numpy_of(v) for k, v in m.state_dict().items()}
    return (({"table": s["emb.weight"]}, ()),
            {"w_ih": s["lstm.weight_ih_l0"].T, "w_hh": s["lstm.weight_hh_l0"].T,
             "b_ih": s["lstm.bias_ih_l0"], "b_hh": s["lstm.bias_hh_l0"]},
            {"w": s["head.weight"].T, "b": s["head.bias"]})


# ------------------------------ 3: a Transformer encoder classifier, Nesterov SGD, step decay

class _Encoder(nn.Module):  # type: ignore[misc]
    def __init__(self, feat: int, e: int, heads: int, ff: int, classes: int,
                 norm_first: tuple[bool, bool]) -> None:
        super().__init__()
        self.inp = nn.Linear(feat, e)
        self.l1, self.l2 = (nn.TransformerEncoderLayer(e, heads, ff, dropout=0.0,
                                                       batch_first=True, norm_first=nf)
                            for nf in norm_first)
        self.head = nn.Linear(e, classes)

    def forward(self, x: Any, mask: Any) -> Any:
        h = self.l2(self.l1(self.inp(x), src_key_padding_mask=mask), src_key_padding_mask=mask)
        valid = (~mask).to(h.dtype)[..., None]
        return self.head((h * valid).sum(1) / valid.sum(1))


@pytest.mark.parametrize("norm_first", [(False, False), (True, True), (False, True)])
def test_transformer_classifier_nesterov_step_decay(norm_first: tuple[bool, bool]) -> None:
    steps, n, t, feat, e, heads, ff, classes = 20, 4, 5, 3, 8, 2, 12, 3

    def block(nf: bool) -> Any:  # (x, mask) -> (encoded x, mask)
        return (L.FanOut(2), L.Parallel(L.TransformerEncoderLayer(
            e, heads, ff, dropout=0.0, norm_first=nf, masked=True), L.Select(1)))

    model = L.Sequential(L.Parallel(L.Dense(e), L.Identity()), *block(norm_first[0]),
                         *block(norm_first[1]), L.MaskedMean(), L.Dense(classes))
    _, p = model.init(random.key(0), ((None, t, feat), (None, t)))
    p = f64(p)
    tm = load(_Encoder(feat, e, heads, ff, classes, norm_first),
              {"inp.weight": p[0][0]["w"].T, "inp.bias": p[0][0]["b"],
               **tel_torch("l1", p[2][0]), **tel_torch("l2", p[4][0]),
               "head.weight": p[6]["w"].T, "head.bias": p[6]["b"]})
    xs = random.normal(random.key(1), (steps, n, t, feat), np.float64)
    lengths = np.asarray(random.randint(random.key(2), (steps, n), 1, t + 1))
    masks = np.arange(t) >= lengths[..., None]
    ys = np.asarray(random.randint(random.key(3), (steps, n), 0, classes))

    sched = optim.piecewise_constant_schedule(0.05, {6: 0.5, 12: 0.2})
    opt = optim.sgd(sched, momentum=0.9, nesterov=True, weight_decay=1e-3)
    ostate = opt.init(p)
    vg = fd.value_and_grad(model, losses.softmax_cross_entropy)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                           weight_decay=1e-3)
    ours, theirs = [], []
    for i in range(steps):
        value, g = vg(p, (xs[i], masks[i]), ys[i])
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        for group in topt.param_groups:  # step decay written out, not funcdl's schedule
            group["lr"] = 0.05 * 0.5 ** (i >= 6) * 0.2 ** (i >= 12)
        topt.zero_grad()
        out = nn.functional.cross_entropy(tm(t64(xs[i]), torch.tensor(masks[i])),
                                          torch.tensor(ys[i]))
        out.backward()
        topt.step()
        theirs.append(out.item())
    losses_agree(ours, theirs)
    s = {k: numpy_of(v) for k, v in tm.state_dict().items()}
    tp = (({"w": s["inp.weight"].T, "b": s["inp.bias"]}, ()), (),
          (block_params(tm.l1), ()), (), (block_params(tm.l2), ()), (),
          {"w": s["head.weight"].T, "b": s["head.bias"]})
    assert rel(p, tp) < TOL


# ---------------------------------- 4: one Dense tied twice, shared over a pair; RMSprop centered

def test_tied_and_shared_rmsprop_centered() -> None:
    steps, n, d = 25, 6, 4
    encoder = L.Tied(L.Sequential(L.Dense(d), L.Tanh(), L.Dense(d)), [0, 2])
    model = L.Sequential(L.Shared(encoder), L.FanInConcat(), L.Dense(1))
    _, p = model.init(random.key(0), ((None, d), (None, d)))
    p = f64(p)
    assert p[0][2] is None  # the tied copy is taken out
    lin, head = load(nn.Linear(d, d), {"weight": p[0][0]["w"].T, "bias": p[0][0]["b"]}), \
        load(nn.Linear(2 * d, 1), {"weight": p[2]["w"].T, "bias": p[2]["b"]})

    def forward(a: Any, b: Any) -> Any:  # one Linear at four places
        f = [lin(torch.tanh(lin(v))) for v in (a, b)]
        return head(torch.cat(f, -1))

    xs = random.normal(random.key(1), (steps, 2, n, d), np.float64)
    ys = random.normal(random.key(2), (steps, n, 1), np.float64)
    opt = optim.rmsprop(1e-2, alpha=0.9, weight_decay=1e-3, momentum=0.5, centered=True)
    ostate = opt.init(p)
    vg = fd.value_and_grad(model, losses.mse)
    topt = torch.optim.RMSprop([*lin.parameters(), *head.parameters()], lr=1e-2, alpha=0.9,
                               weight_decay=1e-3, momentum=0.5, centered=True)
    ours, theirs = [], []
    for x, y in zip(xs, ys):
        value, g = vg(p, (x[0], x[1]), y)
        updates, ostate = opt.update(ostate, g, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        topt.zero_grad()
        out = nn.functional.mse_loss(forward(t64(x[0]), t64(x[1])), t64(y))
        out.backward()
        topt.step()
        theirs.append(out.item())
    losses_agree(ours, theirs)
    assert rel(p, (({"w": numpy_of(lin.weight).T, "b": numpy_of(lin.bias)}, (), None), (),
                   {"w": numpy_of(head.weight).T, "b": numpy_of(head.bias)})) < TOL


# ----------------------------- 6: per-example grads and aux against torch.func.vmap(grad)

def _accuracy_ce() -> Any:
    """softmax_cross_entropy with the batch's accuracy as aux."""
    def vjp(pred: Any, target: Any) -> Any:
        value, pullback = losses.softmax_cross_entropy.vjp(pred, target)
        return (value, np.mean(np.argmax(pred, -1) == target)), pullback
    return losses.Loss("accuracy_ce", vjp)


def test_per_example_grads_and_aux_train_as_torch_func() -> None:
    from torch.func import functional_call, grad, vmap

    steps, n, feat, classes, clip = 20, 6, 4, 3, 0.5
    model = L.Sequential(L.Dense(8), L.Tanh(), L.Dense(classes))
    _, p = model.init(random.key(0), (None, feat))
    p = f64(p)
    tm = load(nn.Sequential(nn.Linear(feat, 8), nn.Tanh(), nn.Linear(8, classes)),
              {"0.weight": p[0]["w"].T, "0.bias": p[0]["b"], "2.weight": p[2]["w"].T,
               "2.bias": p[2]["b"]})
    names = [k for k, _ in tm.named_parameters()]

    def ours_of(g: Any) -> Any:  # torch's name -> tensor, in funcdl's tree
        w = {k: numpy_of(g[k]) for k in names}
        return ({"w": np.swapaxes(w["0.weight"], -1, -2), "b": w["0.bias"]}, (),
                {"w": np.swapaxes(w["2.weight"], -1, -2), "b": w["2.bias"]})

    def one(params: Any, x: Any, y: Any) -> Any:
        out = functional_call(tm, params, (x[None],))
        return nn.functional.cross_entropy(out, y[None])

    per_example = vmap(grad(one), in_dims=(None, 0, 0))
    vg_aux = fd.value_and_grad(model, _accuracy_ce(), has_aux=True)
    pe = fd.per_example_value_and_grad(model, _accuracy_ce(), has_aux=True)
    xs = random.normal(random.key(1), (steps, n, feat), np.float64)
    ys = np.asarray(random.randint(random.key(2), (steps, n), 0, classes))
    opt = optim.dpsgd(0.1, l2_norm_clip=clip, noise_multiplier=0.0, key=random.key(3),
                      momentum=0.9)
    ostate = opt.init(p)
    tp = {k: v.detach().clone() for k, v in tm.named_parameters()}
    tbuf: dict[str, Any] = {}
    ours, theirs, worst = [], [], 0.0
    for x, y in zip(xs, ys):
        (value, acc), g = vg_aux(p, x, y)
        (pe_value, pe_acc), pg = pe(p, x, y)
        assert pe_value == value and pe_acc == acc
        assert rel(tree.map(lambda a: a.mean(0), pg), g) < TOL
        tg = per_example(tp, t64(x), torch.tensor(y))
        worst = max(worst, rel(pg, ours_of(tg)))
        assert acc == np.mean(np.argmax(model.apply(p, x), -1) == y)
        updates, ostate = opt.update(ostate, pg, p)
        p = optim.apply_updates(p, updates)
        ours.append(float(value))

        with torch.no_grad():  # DP-SGD by hand: clip each example's norm, mean, momentum
            theirs.append(nn.functional.cross_entropy(functional_call(tm, tp, (t64(x),)),
                                                      torch.tensor(y)).item())
            norms = torch.sqrt(sum((v.reshape(n, -1) ** 2).sum(1) for v in tg.values()))
            factor = torch.clamp(clip / norms, max=1.0)
            for k in names:
                d = (tg[k] * factor.reshape(-1, *[1] * (tg[k].ndim - 1))).mean(0)
                tbuf[k] = d if k not in tbuf else d + 0.9 * tbuf[k]
                tp[k] = tp[k] - 0.1 * tbuf[k]
    assert worst < TOL
    losses_agree(ours, theirs)
    assert rel(p, ours_of(tp)) < TOL
