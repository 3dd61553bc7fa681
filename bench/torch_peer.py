"""Peer: the same 784-H-10 net in PyTorch eager, written the ordinary way.

``nn.Sequential(nn.Linear, nn.ReLU, nn.Linear)``, ``nn.CrossEntropyLoss`` and
``torch.optim.SGD`` with their defaults, on CPU or CUDA. The weights are copied
from the host NumPy dict of :func:`book_numpy.init_params`, so a ``TorchNet``
starts exactly where a ``BookNet`` (or an xplayers net) built from the same dict
starts. TF32 is switched off on CUDA so float32 products are true float32, as
on the other peers.

Timing protocol: move the batch to the device once with :meth:`TorchNet.tensors`,
then time ``net.step(x, t); net.sync()`` — :meth:`TorchNet.sync` waits for the
GPU, so the clock stops after the work is done.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn


def disable_tf32() -> None:
    """Make float32 CUDA matmuls and convolutions use full float32 (no TF32)."""
    with warnings.catch_warnings():
        # Newer torch releases suggest the fp32_precision API; the old switches still work.
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (does not allocate)."""
    return bool(torch.cuda.is_available())


class TorchNet:
    """784-H-10 Linear-ReLU-Linear with cross-entropy loss and plain SGD.

    Parameters
    ----------
    params
        Host weights ``{"W1": (784, H), "b1": (H,), "W2": (H, 10), "b2": (10,)}``
        (the book's layout; ``nn.Linear`` stores the transpose). Their dtype is
        the net's dtype.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or a ``torch.device``.
    lr
        Learning rate of the SGD optimizer.
    """

    def __init__(self, params: dict[str, np.ndarray], device: Any = "cpu", lr: float = 0.1):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            disable_tf32()
        W1, b1, W2, b2 = (np.asarray(params[k]) for k in ("W1", "b1", "W2", "b2"))
        self.dtype = torch.from_numpy(W1[:1, :1].copy()).dtype
        fan_in, hidden = W1.shape
        classes = W2.shape[1]
        kw = {"device": self.device, "dtype": self.dtype}
        self.model = nn.Sequential(
            nn.Linear(fan_in, hidden, **kw), nn.ReLU(), nn.Linear(hidden, classes, **kw)
        )
        with torch.no_grad():
            for layer, W, b in ((self.model[0], W1, b1), (self.model[2], W2, b2)):
                layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
                layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        self.loss_fn = nn.CrossEntropyLoss()
        self.lr = lr
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)

    def tensors(self, x: np.ndarray, t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy a host batch to the net's device: ``x`` in the net's dtype, ``t`` as int64."""
        xt = torch.as_tensor(np.asarray(x), device=self.device).to(self.dtype)
        tt = torch.as_tensor(np.asarray(t), device=self.device).to(torch.int64)
        return xt, tt

    def step(self, x: torch.Tensor, t: torch.Tensor, lr: float | None = None) -> torch.Tensor:
        """One training step: forward, loss, backward, SGD update. Returns the loss tensor.

        The loss is returned as a tensor (not ``.item()``), so nothing waits on
        the GPU here; call :meth:`sync` before stopping a clock.
        """
        if lr is not None and lr != self.lr:
            self.lr = lr
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), t)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def sync(self) -> None:
        """Wait for the device (``torch.cuda.synchronize``); no-op on CPU."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def params_numpy(self) -> dict[str, np.ndarray]:
        """Current weights in the book's host layout (for checking peers agree)."""
        fc1, fc2 = self.model[0], self.model[2]
        with torch.no_grad():
            return {
                "W1": fc1.weight.T.cpu().numpy().copy(),
                "b1": fc1.bias.cpu().numpy().copy(),
                "W2": fc2.weight.T.cpu().numpy().copy(),
                "b2": fc2.bias.cpu().numpy().copy(),
            }
