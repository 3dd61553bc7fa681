"""The JAX peer: hand-written ``jax.jit`` training steps (autodiff, SGD).

The 784-H-10 net, and chapter 7's convnet with ``lax.conv_general_dilated``
and ``lax.reduce_window``.

Runs on the device of ``XPLAYERS_BACKEND`` when it names jax, else JAX's
default; set ``JAX_ENABLE_X64=1`` for float64. Each timed step ends with
``jax.block_until_ready``.
"""

from __future__ import annotations

import pytest
from book_numpy import init_conv_params, init_params, make_batch

jax = pytest.importorskip("jax")
jnp = jax.numpy
lax = jax.lax
LR = 0.1


def loss(p, x, t):
    h = jnp.maximum(x @ p["W1"] + p["b1"], 0)
    logp = jax.nn.log_softmax(h @ p["W2"] + p["b2"])
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


@jax.jit
def step(p, x, t):
    value, grads = jax.value_and_grad(loss)(p, x, t)
    return value, jax.tree.map(lambda w, g: w - LR * g, p, grads)


def test_step(measure, xb, hidden, dtype, batch):
    if dtype == "float64" and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    device = xb.backend.device if xb.backend.name == "jax" else jax.devices()[0]
    state = {"p": jax.device_put(init_params(hidden, dtype), device)}
    x, t = jax.device_put(make_batch(batch, dtype), device)

    def run():
        _, state["p"] = step(state["p"], x, t)
        jax.block_until_ready(state["p"])

    where = "cpu" if device.platform == "cpu" else "gpu"
    measure(
        run,
        f"step 784-{hidden}-10 {dtype} N={batch}",
        f"jax.jit {where}",
        table=f"Training step, 784-{hidden}-10, {dtype}",
        batch=batch,
        samples=batch,
        plot=True,
        device=where,
    )


def conv_loss(p, x, t):
    h = lax.conv_general_dilated(x, p["W1"], (1, 1), "VALID") + p["b1"][None, :, None, None]
    h = lax.reduce_window(jnp.maximum(h, 0), -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    h = jnp.maximum(h.reshape(h.shape[0], -1) @ p["W2"] + p["b2"], 0)
    logp = jax.nn.log_softmax(h @ p["W3"] + p["b3"])
    return -jnp.mean(jnp.take_along_axis(logp, t[:, None], axis=1))


@jax.jit
def conv_step(p, x, t):
    value, grads = jax.value_and_grad(conv_loss)(p, x, t)
    return value, jax.tree.map(lambda w, g: w - LR * g, p, grads)


def test_conv_step(measure, xb, dtype):
    if dtype == "float64" and not jax.config.jax_enable_x64:
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    device = xb.backend.device if xb.backend.name == "jax" else jax.devices()[0]
    state = {"p": jax.device_put(init_conv_params(dtype), device)}
    x, t = jax.device_put(make_batch(100, dtype, shape=(1, 28, 28)), device)

    def run():
        _, state["p"] = conv_step(state["p"], x, t)
        jax.block_until_ready(state["p"])

    where = "cpu" if device.platform == "cpu" else "gpu"
    measure(
        run,
        f"SimpleConvNet step {dtype} N=100",
        f"jax.jit {where}",
        table="SimpleConvNet training step, batch 100 (samples/s)",
        row=dtype,
        samples=100,
        device=where,
    )
