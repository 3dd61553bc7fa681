"""Volume 2: one training step of the RNN language models, and the Embedding backward.

``BetterRnnlm`` at the book's sizes (V = 10000, D = H = 650, two LSTM
layers, dropout 0.5, tied weights, batch 20 x 35, float32) and ``Rnnlm``
at V = 2000, H = 100; a step is the body of ``RnnlmTrainer.fit``
(forward, backward, shared gradients summed, clipping to 0.25, SGD).
By ``XPLAYERS_BACKEND``: on NumPy the book's code (``book2_numpy``) and
xplayers, plus the Embedding backward alone (700 Zipf-drawn ids into
10000 x 650) against ``np.add.at``; on torch xplayers and a PyTorch eager
peer (``nn.Embedding``, ``nn.LSTM``, a tied ``nn.Linear``,
``clip_grad_norm_``, SGD); on JAX ``RnnlmTrainer.train_step``, which
compiles the whole step as one ``jax.jit`` (:mod:`xplayers.book2._compiled`),
and a hand-written ``jax.lax.scan`` peer.
``XPLAYERS_BENCH_QUICK=1`` shrinks BetterRnnlm to V = 2000, H = 200.
"""

from __future__ import annotations

import numpy as np
import pytest
from book2_numpy import LR, MAX_GRAD, BookLm, init_lm, make_lm_batch

from xplayers.book2 import SGD, BetterRnnlm, Rnnlm, RnnlmTrainer
from xplayers.sequence import embedding_backward

N, T = 20, 35


def _configs(quick):
    better = (2000, 200) if quick else (10000, 650)
    return {"better": (*better, 2), "rnnlm": (2000, 100, 1)}


@pytest.fixture(params=["better", "rnnlm"])
def config(request, quick):
    V, H, layers = _configs(quick)[request.param]
    return request.param, V, H, layers


def _group(name, V, H):
    return f"{'BetterRnnlm' if name == 'better' else 'Rnnlm'} step V={V} H={H} float32 20x35"


def _info(name, V, H, impl_vs=None, goal=None, ratio=1.0):
    info = {
        "table": "Volume 2: language model training step",
        "row": _group(name, V, H),
        "samples": N * T,
    }
    if impl_vs is not None:
        info["goals"] = [{"goal": goal, "vs": impl_vs, "min": ratio}]
    return info


def test_step_book(measure, xb, config):
    if xb.label != "numpy":
        pytest.skip("the book's NumPy code runs in the numpy process")
    name, V, H, layers = config
    model = BookLm(init_lm(V, H, H, layers))
    xs, ts = make_lm_batch(V, N, T)
    measure(lambda: model.step(xs, ts), _group(name, V, H), "book", **_info(name, V, H))


def _xplayers_model(name, V, H, layers, xb):
    p = init_lm(V, H, H, layers)
    cls = BetterRnnlm if name == "better" else Rnnlm
    model = cls(V, H, H, seed=0) if name == "rnnlm" else cls(V, H, H, 0.5, seed=0)
    kept = [xb.backend.asarray(a) for a in p.values()]  # the same weights, in params order
    model.sharing.hand_back(model.sharing.unique(model.params), kept)
    return model


def test_step_xplayers(measure, xb, config):
    name, V, H, layers = config
    if xb.lazy:
        pytest.skip("a lazy backend builds one graph per step: no step to time")
    if xb.label.startswith("jax"):
        pytest.skip("on JAX the trainer's step is compiled: timed as 'xplayers jax.jit'")
    model = _xplayers_model(name, V, H, layers, xb)
    trainer = RnnlmTrainer(model, SGD(lr=LR))
    xs, ts = (xb.backend.asarray(a) for a in make_lm_batch(V, N, T))

    def run():
        xb.done(trainer.train_step(xs, ts, MAX_GRAD))

    impl = f"xplayers {xb.label}"
    goal = vs = None
    if xb.label == "numpy":
        goal, vs, ratio = "NumPy ≥ 2× the book", "book", 2.0
    elif xb.label.startswith("torch"):
        goal, vs, ratio = "torch ≥ 1.0× PyTorch eager", f"torch eager {xb.label[6:]}", 1.0
    else:
        ratio = 1.0
    measure(run, _group(name, V, H), impl, **_info(name, V, H, vs, goal, ratio))


def test_step_torch_eager(measure, xb, config):
    if not xb.label.startswith("torch"):
        pytest.skip("the PyTorch peer runs in the torch process")
    torch = pytest.importorskip("torch")
    nn = torch.nn
    name, V, H, layers = config
    device = xb.backend.device
    p = init_lm(V, H, H, layers)
    better = name == "better"
    embed = nn.Embedding(V, H, device=device)
    lstm = nn.LSTM(H, H, num_layers=layers, batch_first=True, device=device)
    lstm.dropout = 0.5 if better else 0.0
    out = nn.Linear(H, V, device=device)
    drop = nn.Dropout(0.5 if better else 0.0)
    with torch.no_grad():
        embed.weight.copy_(torch.from_numpy(p["embed_W"]))
        if better:
            out.weight = embed.weight  # weight tying
        else:
            out.weight.copy_(torch.from_numpy(p["affine_W"].T.copy()))
    params = list({id(q): q for m in (embed, lstm, out) for q in m.parameters()}.values())
    opt = torch.optim.SGD(params, lr=LR)
    xs, ts = (torch.from_numpy(a.astype(np.int64)).to(device) for a in make_lm_batch(V, N, T))
    state = [None]
    loss_fn = nn.CrossEntropyLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        h = state[0]
        hs, (hn, cn) = lstm(drop(embed(xs)), h)
        loss = loss_fn(out(drop(hs)).reshape(N * T, V), ts.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(params, MAX_GRAD)
        opt.step()
        state[0] = (hn.detach(), cn.detach())  # truncated BPTT: the state carries over
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    impl = "torch eager gpu" if device.type == "cuda" else "torch eager cpu"
    measure(run, _group(name, V, H), impl, **_info(name, V, H))


def _jax_peer_step(name, H, layers):
    """A hand-written JAX model: ``lax.scan`` LSTMs, ``jax.nn`` softmax, the same update."""
    import jax
    import jax.numpy as jnp

    better = name == "better"

    def lstm(Wx, Wh, b, xs, h, c):
        xw = jnp.einsum("ntd,dg->tng", xs, Wx) + b

        def cell(carry, a):
            h, c = carry
            a = a + h @ Wh
            f, g, i, o = jnp.split(a, 4, axis=1)
            c = jax.nn.sigmoid(f) * c + jnp.tanh(g) * jax.nn.sigmoid(i)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        (h, c), hs = jax.lax.scan(cell, (h, c), xw)
        return jnp.swapaxes(hs, 0, 1), (h, c)

    def loss_fn(params, states, xs, ts, key):
        embed_W = params[0]
        h = embed_W[xs]
        keys = jax.random.split(key, layers + 1)
        new_states = []
        for k in range(layers):
            if better:
                h = h * jax.random.bernoulli(keys[k], 0.5, h.shape) * 2.0
            h, st = lstm(*params[1 + 3 * k : 4 + 3 * k], h, *states[k])
            new_states.append(st)
        if better:
            h = h * jax.random.bernoulli(keys[-1], 0.5, h.shape) * 2.0
        W = embed_W.T if better else params[-2]
        logits = h @ W + params[-1]
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, ts[..., None], axis=-1)), new_states

    @jax.jit
    def step(params, states, xs, ts, key):
        (loss, new_states), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, states, xs, ts, key
        )
        norm = jnp.sqrt(sum(jnp.sum(g * g) for g in grads))
        rate = jnp.minimum(1.0, MAX_GRAD / (norm + 1e-6))
        params = [p - LR * rate * g for p, g in zip(params, grads, strict=True)]
        return params, new_states, loss

    return step


@pytest.mark.parametrize("kind", ["xplayers jax.jit", "jax.jit peer"])
def test_step_jax_compiled(measure, xb, config, kind):
    if not xb.label.startswith("jax"):
        pytest.skip("the compiled JAX steps run in the jax process")
    import jax
    import jax.numpy as jnp

    name, V, H, layers = config
    xs, ts = (jnp.asarray(a) for a in make_lm_batch(V, N, T))
    if kind == "xplayers jax.jit":
        trainer = RnnlmTrainer(_xplayers_model(name, V, H, layers, xb), SGD(lr=LR))
        assert trainer.compiled_step(MAX_GRAD) is not None

        def run():
            trainer.train_step(xs, ts, MAX_GRAD).block_until_ready()

        goal, vs = "JAX compiled ≥ 1.0× the jax.jit peer", "jax.jit peer"
        measure(run, _group(name, V, H), kind, **_info(name, V, H, vs, goal, 1.0))
        return
    p = init_lm(V, H, H, layers)
    params = [jnp.asarray(a) for a in p.values()]
    zeros = jnp.zeros((N, H), jnp.float32)
    states = [(zeros, zeros) for _ in range(layers)]
    step = _jax_peer_step(name, H, layers)
    carry = [params, states, jax.random.PRNGKey(0)]

    def run_peer():
        key, sub = jax.random.split(carry[2])
        carry[0], carry[1], loss = step(carry[0], carry[1], xs, ts, sub)
        carry[2] = key
        loss.block_until_ready()

    measure(run_peer, _group(name, V, H), kind, **_info(name, V, H))


@pytest.mark.parametrize("impl", ["xplayers", "np.add.at"])
def test_embedding_backward(measure, xb, impl):
    if xb.label != "numpy":
        pytest.skip("the Embedding backward is compared on NumPy")
    V, D, M = 10000, 650, 700
    rng = np.random.default_rng(0)
    idx = (rng.zipf(1.2, size=M) - 1) % V
    dout = rng.standard_normal((M, D)).astype(np.float32)

    def book():
        dW = np.zeros((V, D), dtype=np.float32)
        np.add.at(dW, idx, dout)
        return dW

    fn = (lambda: embedding_backward(dout, idx, V)) if impl == "xplayers" else book
    info = {"table": "Volume 2: Embedding backward", "row": f"V={V} D={D} {M} Zipf ids"}
    if impl == "xplayers":
        info["goals"] = [{"goal": "≥ 2× np.add.at", "vs": "np.add.at", "min": 2.0}]
    measure(fn, f"Embedding backward V={V} D={D} M={M}", impl, **info)
