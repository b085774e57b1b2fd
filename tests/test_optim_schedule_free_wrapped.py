"""schedule_free_eval_params on a wrapped state: the ScheduleFreeState is found inside a
chain's, inject_hyperparams' or multi_steps' state (a user passes what their optimizer's
update returned); none or several are refused, naming where they are."""

from __future__ import annotations

import numpy as np
import pytest

from funcdl import optim

P = {"w": np.array([1.0, -2.0, 0.5])}
G = {"w": np.array([0.3, 0.1, -0.2])}


@pytest.mark.parametrize("wrap, inner", [
    (lambda o: optim.chain(optim.clip_by_global_norm(10.0), o), lambda s: s.states[1]),
    (lambda o: optim.named_chain(("clip", optim.clip_by_global_norm(10.0)), ("sf", o)),
     lambda s: s.states["sf"]),
    (lambda o: optim.multi_steps(o, 1), lambda s: s.inner_opt_state)])
def test_eval_params_find_the_schedule_free_state_inside_a_wrapper(wrap, inner) -> None:
    opt = wrap(optim.schedule_free_adamw(1e-2, warmup_steps=2))
    state, p = opt.init(P), P
    for _ in range(3):
        u, state = opt.update(state, G, p)
        p = optim.apply_updates(p, u)
    want = optim.schedule_free_eval_params(inner(state), p)
    got = optim.schedule_free_eval_params(state, p)
    np.testing.assert_array_equal(got["w"], want["w"])
    assert not np.array_equal(got["w"], p["w"])  # x, not the training params y


def test_eval_params_refuse_no_or_several_schedule_free_states_saying_where() -> None:
    with pytest.raises(TypeError, match=r"got ScaleByAdamState; pass the state that "):
        optim.schedule_free_eval_params(optim.scale_by_adam().init(P), P)
    two = optim.named_chain(("a", optim.schedule_free_sgd(0.1)),
                            ("b", optim.schedule_free_sgd(0.1)))
    with pytest.raises(TypeError, match=r"it holds 2, at state\.states\['a'\], "
                                        r"state\.states\['b'\]: pass the one"):
        optim.schedule_free_eval_params(two.init(P), P)
