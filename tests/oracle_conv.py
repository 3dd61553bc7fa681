"""A float64 NumPy oracle for the chapter 6-7 layers, written independently of xplayers."""

from __future__ import annotations

import numpy as np


def pad_images(x: np.ndarray, pad: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    out[:, :, pad : pad + h, pad : pad + w] = x
    return out


def out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def im2col(x: np.ndarray, fh: int, fw: int, stride: int, pad: int) -> np.ndarray:
    """Row (n, i, j), column (c, u, v): one window per row, by explicit loops."""
    n, c, h, w = x.shape
    img = pad_images(x, pad)
    oh, ow = out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)
    rows = [
        img[k, :, i * stride : i * stride + fh, j * stride : j * stride + fw].ravel()
        for k in range(n)
        for i in range(oh)
        for j in range(ow)
    ]
    return np.array(rows).reshape(n * oh * ow, c * fh * fw)


def conv2d(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    n, _, h, w = x.shape
    fn, _, fh, fw = W.shape
    img = pad_images(x, pad)
    oh, ow = out_size(h, fh, stride, pad), out_size(w, fw, stride, pad)
    out = np.empty((n, fn, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = img[:, :, i * stride : i * stride + fh, j * stride : j * stride + fw]
            out[:, :, i, j] = np.einsum("ncuv,fcuv->nf", win, W) + b
    return out


def max_pool(x: np.ndarray, ph: int, pw: int, stride: int, pad: int) -> np.ndarray:
    n, c, h, w = x.shape
    img = pad_images(x, pad)
    oh, ow = out_size(h, ph, stride, pad), out_size(w, pw, stride, pad)
    out = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = img[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw]
            out[:, :, i, j] = win.max(axis=(2, 3))
    return out


def max_pool_grad(x: np.ndarray, dout: np.ndarray, ph: int, pw: int, stride: int, pad: int):
    """Each dout to the first maximum (row-major) of its window; overlaps add."""
    n, c, h, w = x.shape
    img = pad_images(x, pad)
    g = np.zeros_like(img)
    for k in range(n):
        for ch in range(c):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    win = img[k, ch, i * stride : i * stride + ph, j * stride : j * stride + pw]
                    u, v = divmod(int(np.argmax(win)), pw)
                    g[k, ch, i * stride + u, j * stride + v] += dout[k, ch, i, j]
    return g[:, :, pad : pad + h, pad : pad + w]


def batch_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-6):
    """The book's training-mode formulas on (N, D) data; returns (out, mean, var)."""
    mu = x.mean(axis=0)
    var = ((x - mu) ** 2).mean(axis=0)
    return gamma * (x - mu) / np.sqrt(var + eps) + beta, mu, var
