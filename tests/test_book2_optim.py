"""The volume 2 optimizers and gradient clipping (xplayers.book2): the book's formulas, every backend.

The references are NumPy transcriptions of the book's ``common/optimizer.py``
and ``clip_grads`` written here, run in float64 beside the backend under
test for a few steps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from xplayers import book2
from xplayers.book2 import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xplayers.errors import LayerInputError

SHAPES = [(3, 2), (2,)]


class _Ref:
    """The book's six update rules on float64 NumPy lists, with the book's state."""

    def __init__(self, name: str, **kw: float) -> None:
        self.name, self.kw = name, kw
        self.s: list[list[np.ndarray]] | None = None
        self.t = 0

    def update(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        kw, name = self.kw, self.name
        if self.s is None:
            self.s = [[np.zeros_like(p) for p in params] for _ in range(2)]
        v, h = self.s
        self.t += 1
        for i, g in enumerate(grads):
            if name == "SGD":
                params[i] -= kw["lr"] * g
            elif name == "Momentum":
                v[i] = kw["momentum"] * v[i] - kw["lr"] * g
                params[i] += v[i]
            elif name == "Nesterov":
                v[i] *= kw["momentum"]
                v[i] -= kw["lr"] * g
                params[i] += kw["momentum"] * kw["momentum"] * v[i]
                params[i] -= (1 + kw["momentum"]) * kw["lr"] * g
            elif name == "AdaGrad":
                h[i] += g * g
                params[i] -= kw["lr"] * g / (np.sqrt(h[i]) + 1e-7)
            elif name == "RMSprop":
                h[i] *= kw["decay_rate"]
                h[i] += (1 - kw["decay_rate"]) * g * g
                params[i] -= kw["lr"] * g / (np.sqrt(h[i]) + 1e-7)
            else:  # Adam, volume 2: bias correction in lr_t only
                b1, b2 = kw["beta1"], kw["beta2"]
                lr_t = kw["lr"] * np.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
                v[i] += (1 - b1) * (g - v[i])  # m
                h[i] += (1 - b2) * (g**2 - h[i])  # v
                params[i] -= lr_t * v[i] / (np.sqrt(h[i]) + 1e-7)


CASES: list[tuple[type, dict[str, float]]] = [
    (SGD, {"lr": 0.1}),
    (Momentum, {"lr": 0.1, "momentum": 0.8}),
    (Nesterov, {"lr": 0.1, "momentum": 0.8}),
    (AdaGrad, {"lr": 0.1}),
    (RMSprop, {"lr": 0.1, "decay_rate": 0.9}),
    (Adam, {"lr": 0.1, "beta1": 0.8, "beta2": 0.9}),
]


@pytest.mark.parametrize(("cls", "kw"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_optimizer_matches_the_book_over_steps(
    backend: Any, rng: np.random.Generator, cls: type, kw: dict[str, float]
) -> None:
    host = [rng.normal(size=s) for s in SHAPES]
    ref_params = [p.copy() for p in host]
    params = [backend.asarray(p) for p in host]
    held = list(params)  # a layer's own list holding the same arrays
    opt, ref = cls(**kw), _Ref(cls.__name__, **kw)
    for _ in range(3):
        g_host = [rng.normal(size=s) for s in SHAPES]
        opt.update(params, [backend.asarray(g) for g in g_host])
        ref.update(ref_params, g_host)
    for got, want in zip(params, ref_params, strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-10, atol=1e-12)
    if params[0] is held[0]:  # written in place: the other holder sees the update
        np.testing.assert_allclose(backend.to_numpy(held[0]), ref_params[0], rtol=1e-10)
    elif not backend.readonly:
        # immutable (JAX) or lazy (Dask: writing walks the task graph): replaced
        assert backend.name == "jax" or backend.lazy, f"{backend.name} params were replaced"


def test_adam_follows_volume_2_not_bias_corrected_moments() -> None:
    """One step from zero state: volume 2 gives lr * g / (|g| + 1e-7 * sqrt(1 - b2)) ... per entry."""
    p, g = np.array([1.0]), np.array([0.5])
    Adam(lr=0.1, beta1=0.9, beta2=0.999).update([p], [g])
    lr_t = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    want = 1.0 - lr_t * (0.1 * 0.5) / (np.sqrt(0.001 * 0.25) + 1e-7)
    assert p[0] == pytest.approx(want, rel=1e-14)
    corrected = 1.0 - 0.1 * 0.5 / (0.5 + 1e-7)  # volume 1 / paper form with eps on v_hat
    assert p[0] != pytest.approx(corrected, rel=1e-12)


def test_optimizers_exported_from_book2() -> None:
    for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
        assert name in book2.__all__


def test_update_refuses_lists_of_different_lengths() -> None:
    with pytest.raises(LayerInputError, match=r"SGD\.update.*grads"):
        SGD().update([np.zeros(2), np.zeros(2)], [np.zeros(2)])


def test_constructor_refuses_a_bad_rate() -> None:
    with pytest.raises(LayerInputError, match=r"Adam.*beta1"):
        Adam(beta1=1.5)


def test_sgd_update_is_fused_where_the_backend_fuses_it(backend, monkeypatch) -> None:
    """SGD calls ``subtract_scaled_`` (torch's ``add_``) and writes into the held array."""
    import xplayers.book2.optimizer as optimizer

    calls: list[float] = []
    real = optimizer.subtract_scaled_

    def counting(p: Any, g: Any, lr: float) -> bool:
        calls.append(lr)
        return bool(real(p, g, lr))

    monkeypatch.setattr(optimizer, "subtract_scaled_", counting)
    p = backend.asarray(np.ones((3, 2)))
    params = [p]
    SGD(lr=0.5).update(params, [backend.asarray(np.full((3, 2), 2.0))])
    assert calls == [0.5]
    np.testing.assert_array_equal(backend.to_numpy(params[0]), np.zeros((3, 2)))
