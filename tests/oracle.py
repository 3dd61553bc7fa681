"""A float64 NumPy oracle, written independently of xplayers, and central differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(x: np.ndarray, t: np.ndarray) -> float:
    """Mean cross-entropy of logits x against labels (N,) or probabilities (N, C)."""
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    if t.ndim == 1:
        return float(-logp[np.arange(len(t)), t].mean())
    return float(-(t * logp).sum() / len(x))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to x (modified in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


def tolerance(dtype: str) -> dict[str, float]:
    """Comparison tolerances scaled to the dtype."""
    return {"rtol": 1e-10, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-5, "atol": 1e-6}
