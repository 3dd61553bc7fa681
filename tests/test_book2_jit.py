"""Volume 2's compiled training step (xplayers/book2/_compiled.py) equals the layer path.

On JAX, ``RnnlmTrainer.train_step`` and ``Trainer.fit`` run one ``jax.jit``
function per model, optimizer class and ``max_grad``. These tests run the
same steps through the layers (an optimizer subclass with its own
``update`` is not compiled) and compare the losses, every weight, the
optimizer's state and the recurrent state carried; they count the traces
and check what runs the layers instead.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import xplayers as xpl
from xplayers.book2 import (
    CBOW,
    SGD,
    Adam,
    AttentionSeq2seq,
    BetterRnnlm,
    Momentum,
    Rnnlm,
    RnnlmTrainer,
    Seq2seq,
    Trainer,
)
from xplayers.errors import LayerInputError, LayerStateError

pytestmark = pytest.mark.backends("jax")

V, N, T = 23, 4, 3


@pytest.fixture
def jax_backend():
    """JAX selected as the current backend."""
    pytest.importorskip("jax")
    ok, why = xpl.backend_status("jax")
    if not ok:
        pytest.skip(f"backend jax not usable: {why}")
    with xpl.use_backend("jax"):
        yield xpl.get_backend()


def _dtype():
    import jax

    return "float64" if jax.config.jax_enable_x64 else "float32"


def _tol(opt_class=None):
    if _dtype() == "float64":
        return {"rtol": 1e-9, "atol": 1e-11}
    if opt_class is Adam:
        # Adam moves a weight by about lr_t * m / sqrt(v) whatever the gradient's size, so
        # float32 rounding in a near-zero gradient entry reaches the weight, scaled by lr only
        return {"rtol": 2e-5, "atol": 1e-5}
    return {"rtol": 2e-5, "atol": 2e-6}


def _host(a):
    return np.asarray(xpl.to_numpy(a))


class LayerPathSGD(SGD):
    """SGD with an ``update`` of its own: the trainers run the layers for it."""

    def update(self, params, grads):
        super().update(params, grads)


class LayerPathAdam(Adam):
    def update(self, params, grads):
        super().update(params, grads)


class LayerPathMomentum(Momentum):
    def update(self, params, grads):
        super().update(params, grads)


LAYER_PATH = {SGD: LayerPathSGD, Adam: LayerPathAdam, Momentum: LayerPathMomentum}


def _model(name):
    if name == "Rnnlm":
        return Rnnlm(V, 5, 7, seed=1, dtype=_dtype())
    return BetterRnnlm(V, 6, 6, 0.5, seed=1, dtype=_dtype())


def _batches(steps=3):
    rng = np.random.default_rng(0)
    return [
        (xpl.asarray(rng.integers(0, V, (N, T))), xpl.asarray(rng.integers(0, V, (N, T))))
        for _ in range(steps)
    ]


def _cells(model):
    return model.lstm_layers if hasattr(model, "lstm_layers") else [model.lstm_layer]


def _run_lm(name, opt_class, compiled, max_grad=0.25, lrs=(0.5, 0.5, 0.1)):
    model = _model(name)
    optimizer = (opt_class if compiled else LAYER_PATH[opt_class])(lr=lrs[0])
    trainer = RnnlmTrainer(model, optimizer)
    assert (trainer.compiled_step(max_grad) is not None) == compiled
    losses = []
    for lr, (x, t) in zip(lrs, _batches(len(lrs)), strict=True):
        optimizer.lr = lr  # the book lowers lr between epochs: traced as a value
        losses.append(float(trainer.train_step(x, t, max_grad)))
    return model, optimizer, trainer, losses


@pytest.mark.parametrize(
    ("name", "opt_class"), [("Rnnlm", Momentum), ("BetterRnnlm", SGD), ("BetterRnnlm", Adam)]
)
def test_compiled_lm_step_equals_the_layer_path(jax_backend, name, opt_class):
    """Loss, every weight (tied ones too), optimizer state and LSTM state after three steps."""
    tol = _tol(opt_class)
    lrs = (0.01, 0.01, 0.002) if opt_class is Adam else (0.5, 0.5, 0.1)  # Adam's steps are lr
    got, got_opt, trainer, got_loss = _run_lm(name, opt_class, compiled=True, lrs=lrs)
    want, want_opt, _, want_loss = _run_lm(name, opt_class, compiled=False, lrs=lrs)
    np.testing.assert_allclose(got_loss, want_loss, **tol)
    assert len(got.params) == len(want.params)
    for g, w in zip(got.params, want.params, strict=True):
        np.testing.assert_allclose(_host(g), _host(w), **tol)
    for g, w in zip(got.grads, want.grads, strict=True):
        np.testing.assert_allclose(_host(g), _host(w), **tol)
    for a, b in zip(_cells(got), _cells(want), strict=True):
        np.testing.assert_allclose(_host(a.h), _host(b.h), **tol)
        np.testing.assert_allclose(_host(a.c), _host(b.c), **tol)
    for store in opt_class.state_names:
        for g, w in zip(getattr(got_opt, store), getattr(want_opt, store), strict=True):
            np.testing.assert_allclose(_host(g), _host(w), **tol)
    assert getattr(got_opt, "iter", 0) == getattr(want_opt, "iter", 0)
    step = trainer.compiled_step(0.25)
    assert step is not None
    assert step.traces == 1


def test_tied_weight_stays_tied_after_compiled_steps(jax_backend):
    model, _, _, _ = _run_lm("BetterRnnlm", SGD, compiled=True)
    embed_W, affine_W = model.layers[0].params[0], model.layers[-1].params[0]
    np.testing.assert_array_equal(_host(affine_W), _host(embed_W).T)
    assert model.params[0] is embed_W


def test_compiled_step_leaves_no_traced_values(jax_backend):
    """What a forward keeps for its backward is dropped; a backward needs a forward first."""
    model, _, _, _ = _run_lm("BetterRnnlm", SGD, compiled=True)
    assert model.layers[0].idx is None
    assert model.lstm_layers[0].cache is None
    with pytest.raises(LayerStateError, match=r"before TimeEmbedding\.forward"):
        model.layers[0].backward(xpl.asarray(np.zeros((N, T, 6), dtype=_dtype())))
    x, t = _batches(1)[0]
    loss = model.forward(x, t)  # the layers run again on the compiled step's weights
    model.backward()
    assert np.isfinite(float(loss))


def test_bad_ids_are_refused_before_any_weight_changes(jax_backend):
    model = _model("Rnnlm")
    trainer = RnnlmTrainer(model, SGD(lr=0.5))
    (x, t), (x2, _t2) = _batches(2)
    bad = xpl.asarray(np.full((N, T), V))
    before = [_host(p) for p in model.params]
    with pytest.raises(LayerInputError, match=r"TimeEmbedding\.forward.*ids in \[0, 23\)"):
        trainer.train_step(bad, t)  # the first call: checked after the trace, before the update
    trainer.train_step(x, t)
    after = [_host(p) for p in model.params]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises(LayerInputError, match=r"TimeSoftmaxWithLoss\.forward.*id 23"):
        trainer.train_step(x2, bad)  # a known shape: checked before the call
    for a, p in zip(after, model.params, strict=True):
        np.testing.assert_array_equal(a, _host(p))


def test_fit_runs_the_compiled_step(jax_backend, capsys):
    model = _model("BetterRnnlm")
    trainer = RnnlmTrainer(model, SGD(lr=1.0))
    corpus = np.random.default_rng(0).integers(0, V, 200)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=2, batch_size=N, time_size=T, max_grad=0.25)
    step = trainer.compiled_step(0.25)
    assert step is not None
    assert step.traces == 1
    assert len(trainer.ppl_list) == 2
    assert all(np.isfinite(trainer.ppl_list))
    assert "perplexity" in capsys.readouterr().out


def _seq2seq_fit(cls, opt_class):
    rng = np.random.default_rng(2)
    x, t = rng.integers(0, 13, (12, 5)), rng.integers(0, 13, (12, 4))
    model = cls(13, 6, 7, rng=np.random.default_rng(0), dtype=_dtype())
    optimizer = opt_class(lr=0.01)
    trainer = Trainer(model, optimizer, seed=3)
    trainer.fit(x, t, max_epoch=2, batch_size=4, max_grad=1.0, eval_interval=1)
    return model, trainer


@pytest.mark.parametrize("cls", [Seq2seq, AttentionSeq2seq])
def test_compiled_seq2seq_fit_equals_the_layer_path(jax_backend, cls, capsys):
    got, trainer = _seq2seq_fit(cls, Adam)
    want, want_trainer = _seq2seq_fit(cls, LayerPathAdam)
    np.testing.assert_allclose(trainer.loss_list, want_trainer.loss_list, **_tol())
    for g, w in zip(got.params, want.params, strict=True):
        np.testing.assert_allclose(_host(g), _host(w), **_tol())
    steps = [s for s in trainer._steps.values() if s is not None]
    assert len(steps) == 1
    assert steps[0].traces == 1
    assert not [s for s in want_trainer._steps.values() if s is not None]


def test_layer_path_where_the_step_cannot_compile(jax_backend):
    """A host sampler (negative sampling), an optimizer of one's own, NumPy: the layers run."""
    cbow = CBOW(V, 5, 1, np.arange(V), seed=0)
    trainer = Trainer(cbow, SGD())
    from xplayers.book2._compiled import compiled_step

    assert compiled_step({}, cbow, trainer.shared_weights(), SGD(), None) is None
    assert RnnlmTrainer(_model("Rnnlm"), LayerPathSGD()).compiled_step() is None
    with xpl.use_backend("numpy"):
        assert RnnlmTrainer(Rnnlm(V, 5, 7, seed=1), SGD()).compiled_step() is None


_WITHOUT_X64 = """
import numpy as np
import jax
import xplayers as xpl
from xplayers.book2 import BetterRnnlm, RnnlmTrainer, SGD

assert not jax.config.jax_enable_x64
rng = np.random.default_rng(0)
x, t = rng.integers(0, 30, (4, 5)), rng.integers(0, 30, (4, 5))
out = {}
for name in ("numpy", "jax"):
    with xpl.use_backend(name):
        model = BetterRnnlm(30, 6, 6, 0.5, seed=7)
        trainer = RnnlmTrainer(model, SGD(lr=0.5))
        assert (trainer.compiled_step(0.25) is not None) == (name == "jax")
        losses = [float(trainer.train_step(xpl.asarray(x), xpl.asarray(t), 0.25)) for _ in range(2)]
        out[name] = (losses, [np.asarray(xpl.to_numpy(p)) for p in model.params])
np.testing.assert_allclose(out["jax"][0], out["numpy"][0], rtol=1e-5)
for a, b in zip(out["jax"][1], out["numpy"][1]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
print("ok", trainer.compiled_step(0.25).traces)
"""


def test_compiled_step_without_x64_equals_numpy(jax_backend):
    """JAX's default 32-bit mode: int32 ids, float32 weights; the NumPy layers' numbers."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XPLAYERS_BACKEND")}
    r = subprocess.run(
        [sys.executable, "-c", _WITHOUT_X64],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ok 1"


class ComputedIdsRnnlm(Rnnlm):
    """Embeds ids computed inside the step: the trace cannot check them against ``xs``."""

    def forward(self, xs, ts):
        return super().forward(xs % V, ts)


def test_ids_computed_inside_the_step_run_the_layers(jax_backend):
    model = ComputedIdsRnnlm(V, 5, 7, seed=1, dtype=_dtype())
    want = Rnnlm(V, 5, 7, seed=1, dtype=_dtype())
    trainer, want_trainer = RnnlmTrainer(model, SGD(lr=0.5)), RnnlmTrainer(want, LayerPathSGD(0.5))
    for x, t in _batches(2):
        np.testing.assert_allclose(
            float(trainer.train_step(x, t)), float(want_trainer.train_step(x, t)), **_tol()
        )
    step = trainer.compiled_step()
    assert step is not None
    assert list(step.checks.values()) == [None]  # traced once, found uncheckable, layers ran
    assert step.traces == 1
    for g, w in zip(model.params, want.params, strict=True):
        np.testing.assert_allclose(_host(g), _host(w), **_tol())


class HostWritingRnnlm(Rnnlm):
    """The book's decoders' pattern: a step's gradient written into a NumPy array."""

    def backward(self, dout=1):
        dout = self.layers[-1].backward(self.loss_layer.backward(dout))
        host = np.zeros(tuple(dout.shape), dtype=np.dtype(str(dout.dtype)))
        host[...] = dout  # needs the value: no trace can do it
        dout = xpl.asarray(host)
        for layer in reversed(self.layers[:-1]):
            dout = layer.backward(dout)
        self.grads[:] = [g for layer in self.layers for g in layer.grads]
        return dout


def test_a_model_writing_host_arrays_runs_its_layers(jax_backend):
    """The trace fails, nothing changes, and every step runs the layers: the layer path's numbers."""
    results = []
    for opt_class in (SGD, LayerPathSGD):
        model = HostWritingRnnlm(V, 5, 7, seed=1, dtype=_dtype())
        trainer = RnnlmTrainer(model, opt_class(lr=0.5))
        losses = [float(trainer.train_step(x, t, 0.25)) for x, t in _batches(2)]
        results.append((losses, [_host(p) for p in model.params], trainer))
    (got_loss, got_params, trainer), (want_loss, want_params, _) = results
    np.testing.assert_allclose(got_loss, want_loss, **_tol())
    for g, w in zip(got_params, want_params, strict=True):
        np.testing.assert_allclose(g, w, **_tol())
    step = trainer.compiled_step(0.25)
    assert step is not None
    assert step.host_bound
    assert step.traces == 1  # tried once, not at every step
