"""The pure functions of volume 2 (xplayers.sequence): gradients and scatter-add, every backend.

Each backward is run on the backend under test and compared with central
differences of the same forward evaluated on float64 NumPy copies; the
loss is ``sum(outputs * R)`` for fixed random ``R``, so every output entry
counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from xplayers import sequence as sq
from xplayers.functional import kernel_module, softmax
from xplayers.gradcheck import numerical_gradient, relative_error

TOL = 1e-6
N, T, D, H, V = 2, 3, 3, 2, 5


def _r(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape)


def _dot(a: Any, b: np.ndarray) -> float:
    return float(np.sum(np.asarray(a) * b))


Case = tuple[dict[str, np.ndarray], Callable[..., float], Callable[..., dict[str, Any]]]


def _cell_case(rng: np.random.Generator, kind: str) -> Case:
    g = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    arrays = {
        "Wx": _r(rng, D, g * H),
        "Wh": _r(rng, H, g * H),
        "b": _r(rng, g * H),
        "x": _r(rng, N, D),
        "h": _r(rng, N, H),
    }
    if kind == "lstm":
        arrays["c"] = _r(rng, N, H)
    R1, R2 = _r(rng, N, H), _r(rng, N, H)
    fwd = getattr(sq, kind)

    def loss(a: dict[str, Any]) -> float:
        if kind == "lstm":
            h, c, _ = fwd(a["Wx"], a["Wh"], a["b"], a["x"], a["h"], a["c"])
            return _dot(h, R1) + _dot(c, R2)
        h, _ = fwd(a["Wx"], a["Wh"], a["b"], a["x"], a["h"])
        return _dot(h, R1)

    def grads(a: dict[str, Any], to: Callable[[np.ndarray], Any]) -> dict[str, Any]:
        if kind == "lstm":
            _, _, cache = fwd(a["Wx"], a["Wh"], a["b"], a["x"], a["h"], a["c"])
            dx, dh, dc, (dWx, dWh, db) = sq.lstm_backward(cache, to(R1), to(R2))
            return {"x": dx, "h": dh, "c": dc, "Wx": dWx, "Wh": dWh, "b": db}
        _, cache = fwd(a["Wx"], a["Wh"], a["b"], a["x"], a["h"])
        dx, dh, (dWx, dWh, db) = getattr(sq, kind + "_backward")(cache, to(R1))
        return {"x": dx, "h": dh, "Wx": dWx, "Wh": dWh, "b": db}

    return arrays, loss, grads


def _time_case(rng: np.random.Generator, kind: str) -> Case:
    g = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    arrays = {
        "Wx": _r(rng, D, g * H),
        "Wh": _r(rng, H, g * H),
        "b": _r(rng, g * H),
        "xs": _r(rng, N, T, D),
        "h": _r(rng, N, H),
    }
    if kind == "lstm":
        arrays["c"] = _r(rng, N, H)
    Rs, Rh, Rc = _r(rng, N, T, H), _r(rng, N, H), _r(rng, N, H)
    fwd = getattr(sq, "time_" + kind)
    bwd = getattr(sq, "time_" + kind + "_backward")

    def run(a: dict[str, Any]) -> Any:
        states = (a["h"], a["c"]) if kind == "lstm" else (a["h"],)
        return fwd(a["Wx"], a["Wh"], a["b"], a["xs"], *states)

    def loss(a: dict[str, Any]) -> float:
        hs, _, last = run(a)
        if kind == "lstm":
            return _dot(hs, Rs) + _dot(last[0], Rh) + _dot(last[1], Rc)
        return _dot(hs, Rs) + _dot(last, Rh)

    def grads(a: dict[str, Any], to: Callable[[np.ndarray], Any]) -> dict[str, Any]:
        _, cache, _ = run(a)
        if kind == "lstm":
            dxs, (dh, dc), (dWx, dWh, db) = bwd(cache, to(Rs), to(Rh), to(Rc))
            return {"xs": dxs, "h": dh, "c": dc, "Wx": dWx, "Wh": dWh, "b": db}
        dxs, dh, (dWx, dWh, db) = bwd(cache, to(Rs), to(Rh))
        return {"xs": dxs, "h": dh, "Wx": dWx, "Wh": dWh, "b": db}

    return arrays, loss, grads


def _other_cases(rng: np.random.Generator) -> dict[str, Case]:
    cases: dict[str, Case] = {}
    R = _r(rng, N, V)
    cases["matmul"] = (
        {"x": _r(rng, N, D), "W": _r(rng, D, V)},
        lambda a: _dot(sq.matmul(a["x"], a["W"])[0], R),
        lambda a, to: dict(
            zip(("x", "W"), sq.matmul_backward(sq.matmul(a["x"], a["W"])[1], to(R)), strict=True)
        ),
    )
    Ra = _r(rng, N, T, V)

    def affine_grads(a: dict[str, Any], to: Callable[[np.ndarray], Any]) -> dict[str, Any]:
        dxs, (dW, db) = sq.time_affine_backward(sq.time_affine(a["W"], a["b"], a["xs"])[1], to(Ra))
        return {"xs": dxs, "W": dW, "b": db}

    cases["time_affine"] = (
        {"W": _r(rng, D, V), "b": _r(rng, V), "xs": _r(rng, N, T, D)},
        lambda a: _dot(sq.time_affine(a["W"], a["b"], a["xs"])[0], Ra),
        affine_grads,
    )
    Rsm = _r(rng, N, V)
    cases["softmax"] = (
        {"x": _r(rng, N, V)},
        lambda a: _dot(softmax(a["x"]), Rsm),
        lambda a, to: {"x": sq.softmax_backward(softmax(a["x"]), to(Rsm))},
    )
    ts = np.array([[1, -1, 4], [0, 2, -1]])

    def tsce(a: dict[str, Any]) -> float:
        return 1.7 * float(np.asarray(sq.time_softmax_cross_entropy(a["xs"], _like(ts, a))[0]))

    cases["time_softmax_cross_entropy"] = (
        {"xs": _r(rng, N, T, V)},
        tsce,
        lambda a, to: {
            "xs": sq.time_softmax_cross_entropy_backward(
                sq.time_softmax_cross_entropy(a["xs"], to(ts))[1], 1.7
            )
        },
    )
    t01 = np.array([[1, 0, 1], [0, 0, 1]])
    cases["sigmoid_cross_entropy"] = (
        {"x": _r(rng, N, T) * 3},
        lambda a: 0.5 * float(np.asarray(sq.sigmoid_cross_entropy(a["x"], _like(t01, a))[0])),
        lambda a, to: {
            "x": sq.sigmoid_cross_entropy_backward(
                sq.sigmoid_cross_entropy(a["x"], to(t01))[1], 0.5
            )
        },
    )
    idx = np.array([[1, 4, 1], [1, 0, 1]])
    Re = _r(rng, N, T, D)
    cases["embedding"] = (
        {"W": _r(rng, V, D)},
        lambda a: _dot(sq.embedding(a["W"], _like(idx, a)), Re),
        lambda a, to: {"W": sq.embedding_backward(to(Re), to(idx), V)},
    )
    return cases


def _like(t: np.ndarray, a: dict[str, Any]) -> Any:
    """Integer targets on the host (the numerical side runs on NumPy)."""
    return t


def _all_cases() -> dict[str, Case]:
    rng = np.random.default_rng(2024)
    cases = {k: _cell_case(rng, k) for k in ("rnn", "lstm", "gru")}
    cases.update({f"time_{k}": _time_case(rng, k) for k in ("rnn", "lstm", "gru")})
    cases.update(_other_cases(rng))
    return cases


CASES = _all_cases()


@pytest.mark.parametrize("name", list(CASES))
def test_backward_matches_central_differences(backend, name):
    arrays, loss, grads = CASES[name]

    def to(a: np.ndarray) -> Any:
        return backend.asarray(a, dtype="float64" if a.dtype.kind == "f" else None)

    analytic = grads({k: to(v) for k, v in arrays.items()}, to)
    assert set(analytic) == set(arrays)
    for key, value in arrays.items():

        def f(z: np.ndarray, key: str = key) -> float:
            return loss({**arrays, key: z})

        numeric = numerical_gradient(f, value.copy())
        got = backend.to_numpy(analytic[key])
        assert got.shape == value.shape, key
        assert got.dtype == np.float64, key
        assert relative_error(got, numeric) < TOL, key


# --------------------------------------------------------------------------- scatter-add


def _heavy_repeats(rng: np.random.Generator, m: int, v: int) -> np.ndarray:
    """Zipf-like ids: a few rows hit many times, most rows never."""
    return (rng.zipf(1.5, size=m) - 1) % v


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    ("m", "v", "d"), [(200, 7, 3), (50, 1, 4), (1, 5, 2), (0, 4, 3), (300, 40, 1)]
)
def test_scatter_add_equals_numpy_add_at(backend, dtype, m, v, d):
    rng = np.random.default_rng(m * 31 + v)
    idx = _heavy_repeats(rng, m, v)
    values = rng.normal(size=(m, d)).astype(dtype)
    want = np.zeros((v, d), dtype)
    np.add.at(want, idx, values)
    vb, ib = backend.asarray(values), backend.asarray(idx)
    tol = 1e-12 if dtype == "float64" else 2e-5
    for impl in (sq.scatter_add, sq.scatter_add.generic):
        got = impl(vb, ib, v)
        assert got.dtype == vb.dtype
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=tol, atol=tol)
    np.testing.assert_array_equal(backend.to_numpy(vb), values)  # the input is left alone


def test_scatter_add_generic_works_in_chunks(monkeypatch):
    rng = np.random.default_rng(3)
    idx = _heavy_repeats(rng, 100, 6)
    values = rng.normal(size=(100, 3))
    want = np.zeros((6, 3))
    np.add.at(want, idx, values)
    monkeypatch.setattr(sq, "SCATTER_CHUNK", 6 * 7)  # chunks of 7 indices, the last one short
    np.testing.assert_allclose(sq.scatter_add.generic(values, idx, 6), want, rtol=1e-12)


def test_scatter_add_skips_indices_out_of_range(backend):
    values = backend.asarray(np.ones((3, 2)))
    idx = backend.asarray(np.array([-1, 2, 9]))
    got = backend.to_numpy(sq.scatter_add(values, idx, 3))
    np.testing.assert_array_equal(got, [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])


def test_scatter_add_kernel_is_chosen_per_library(backend):
    module = kernel_module(backend.asarray(np.zeros(1)))
    values = backend.asarray(np.ones((4, 2)))
    idx = backend.asarray(np.array([1, 1, 0, 1]))
    if module is None or not hasattr(module, "scatter_add"):
        pytest.skip(f"{backend.name} runs the generic scatter-add")
    got = module.scatter_add(values, idx, 2)
    assert got is not NotImplemented
    np.testing.assert_array_equal(backend.to_numpy(got), [[1.0, 1.0], [3.0, 3.0]])


def test_time_softmax_loss_of_only_ignored_labels_is_zero(backend):
    xs = backend.asarray(np.random.default_rng(0).normal(size=(2, 2, 3)))
    ts = backend.asarray(np.full((2, 2), -1))
    loss, cache = sq.time_softmax_cross_entropy(xs, ts)
    assert float(backend.to_numpy(loss)) == 0.0
    np.testing.assert_array_equal(
        backend.to_numpy(sq.time_softmax_cross_entropy_backward(cache)), np.zeros((2, 2, 3))
    )


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_time_cells_project_all_steps_in_one_product(monkeypatch, kind):
    """``x_t W_x + b`` of all T steps is one affine map, and its gradients one backward."""
    calls: list[str] = []
    real_affine, real_backward = sq.affine, sq.affine_backward

    def affine(x: Any, W: Any, b: Any) -> Any:
        calls.append(f"affine {tuple(x.shape)}")
        return real_affine(x, W, b)

    def affine_backward(dout: Any, x: Any, W: Any) -> Any:
        calls.append(f"backward {tuple(x.shape)}")
        return real_backward(dout, x, W)

    monkeypatch.setattr(sq, "affine", affine)
    monkeypatch.setattr(sq, "affine_backward", affine_backward)
    arrays, _, grads = CASES[f"time_{kind}"]
    grads(arrays, np.asarray)
    assert calls == [f"affine {(N * T, D)}", f"backward {(N * T, D)}"]


def _label_inputs(backend: Any, dtype: str) -> tuple[Any, Any, Any]:
    """Rows with a label in range, an ignored -1, one past the classes, and a -inf entry."""
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(dtype)
    x[1, 2] = -np.inf
    t = np.array([2, 1, -1, 4, 0])
    w = np.array([0.5, 2.0, 0.0, 1.0, -1.5], dtype=dtype)
    return backend.asarray(x), backend.asarray(t), backend.asarray(w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_label_kernels_match_the_generic_forms(backend, dtype):
    x, t, w = _label_inputs(backend, dtype)
    picked = sq.at_labels(x, t)
    grad = sq.softmax_label_gradient(x, t, w)
    want_picked = sq.at_labels.generic(x, t)
    want_grad = sq.softmax_label_gradient.generic(x, t, w)
    for got, want in ((picked, want_picked), (grad, want_grad)):
        assert str(got.dtype) == str(want.dtype)
    np.testing.assert_array_equal(backend.to_numpy(picked), backend.to_numpy(want_picked))
    # y * w - w against (y - 1) * w: one rounding apart
    np.testing.assert_allclose(
        backend.to_numpy(grad), backend.to_numpy(want_grad), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_array_equal(backend.to_numpy(picked)[[2, 3]], [0.0, 0.0])


def test_label_kernels_leave_their_inputs_unchanged(backend):
    x, t, w = _label_inputs(backend, "float64")
    before = [backend.to_numpy(a).copy() for a in (x, t, w)]
    sq.at_labels(x, t)
    sq.softmax_label_gradient(x, t, w)
    for a, b in zip((x, t, w), before, strict=True):
        np.testing.assert_array_equal(backend.to_numpy(a), b)


def test_label_kernels_are_chosen_per_library(backend):
    module = kernel_module(backend.asarray(np.zeros(1)))
    if module is None or not hasattr(module, "at_labels"):
        pytest.skip(f"{backend.name} runs the generic label picking")
    x, t, w = _label_inputs(backend, "float64")
    assert module.at_labels(x, t) is not NotImplemented
    assert module.softmax_label_gradient(x, t, w) is not NotImplemented


def _lstm_arrays(backend: Any) -> tuple[list[Any], Any, Any, Any]:
    rng = np.random.default_rng(8)
    arrays = [_r(rng, D, 4 * H), _r(rng, H, 4 * H), _r(rng, 4 * H), _r(rng, N, T, D)]
    states = [_r(rng, N, H), _r(rng, N, H)]
    grads = [_r(rng, N, T, H), _r(rng, N, H), _r(rng, N, H)]
    to = backend.asarray
    return [to(a) for a in arrays], [to(s) for s in states], *(to(g) for g in grads)


@pytest.mark.parametrize("with_states", [False, True])
def test_time_lstm_kernel_matches_the_generic_loop(backend, with_states):
    """A library's own LSTM over time gives the generic loop's outputs and gradients."""
    if not hasattr(kernel_module(backend.asarray(np.zeros(1))), "time_lstm"):
        pytest.skip(f"{backend.name} runs the generic LSTM loop")
    arrays, states, dhs, dh, dc = _lstm_arrays(backend)
    args = (*arrays, *states) if with_states else tuple(arrays)
    got = sq.time_lstm(*args)
    want = sq.time_lstm.generic(*args)
    assert type(got[1]) is not type(want[1])  # the library's cache, not the loop's
    pairs = [(got[0], want[0]), *zip(got[2], want[2], strict=True)]
    back = sq.time_lstm_backward(got[1], dhs, dh, dc)
    again = sq.time_lstm_backward(got[1], dhs, dh, dc)  # the cache serves twice, as the loop's
    ref = sq.lstm_through_time_backward.generic(dhs, want[1], dh, dc)
    pairs += [(back[0], ref[0]), *zip(back[1], ref[1], strict=True)]
    pairs += [*zip(back[2], ref[2], strict=True), *zip(again[2], ref[2], strict=True)]
    for a, b in pairs:
        assert tuple(a.shape) == tuple(b.shape)
        np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), rtol=1e-10, atol=1e-12)


def test_time_lstm_kernel_leaves_autograd_inputs_to_the_loop(backend):
    """Weights that autograd tracks, or inference mode, run the generic loop (its cache)."""
    torch = pytest.importorskip("torch")
    if backend.name != "torch":
        pytest.skip("torch's autograd")
    arrays, _, _, _, _ = _lstm_arrays(backend)
    tracked = [arrays[0].clone().requires_grad_(), *arrays[1:]]
    assert type(sq.time_lstm(*tracked)[1]) is tuple
    with torch.inference_mode():
        assert type(sq.time_lstm(*arrays)[1]) is tuple
    assert type(sq.time_lstm(*arrays)[1]) is not tuple
