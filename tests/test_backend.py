"""The backend selector: names, devices, scoping, the environment variable, transfers."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import xplayers as xpl
from xplayers import BackendUnavailableError
from xplayers.backend import parse_spec
from xplayers.errors import BackendSelectionError


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "XPLAYERS_BACKEND": "", **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, check=False
    )


def test_default_is_numpy():
    assert xpl.get_backend().name == "numpy"
    assert xpl.get_backend().device == "cpu"
    assert isinstance(xpl.asarray([1.0]), np.ndarray)


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"unknown backend 'nupmy'.*valid names: numpy, cupy, torch, jax, dask, array_api_strict",
    ):
        xpl.set_backend("nupmy")
    with pytest.raises(ValueError, match="valid names"), xpl.use_backend("tensorflow"):
        pass


def test_set_backend_is_global_and_use_backend_is_scoped():
    pytest.importorskip("array_api_strict")
    try:
        xpl.set_backend("array_api_strict")
        assert xpl.get_backend().name == "array_api_strict"
        with xpl.use_backend("numpy") as b:
            assert b.name == "numpy"
            assert xpl.get_backend() is b
        assert xpl.get_backend().name == "array_api_strict"
    finally:
        xpl.set_backend("numpy")


def test_use_backend_restored_on_error():
    pytest.importorskip("array_api_strict")
    with pytest.raises(RuntimeError, match="boom"), xpl.use_backend("array_api_strict"):
        raise RuntimeError("boom")
    assert xpl.get_backend().name == "numpy"


def test_use_backend_nests():
    pytest.importorskip("array_api_strict")
    with xpl.use_backend("array_api_strict"):
        with xpl.use_backend("array_api_strict", "device1") as inner:
            assert str(xpl.asarray([1.0]).device) == str(inner.device)
        assert "CPU_DEVICE" in str(xpl.get_backend().device)


def test_use_backend_is_thread_local():
    pytest.importorskip("array_api_strict")
    seen: dict[str, str] = {}
    entered, release = threading.Event(), threading.Event()

    def worker() -> None:
        with xpl.use_backend("array_api_strict"):
            entered.set()
            release.wait(5)
            seen["worker"] = xpl.get_backend().name

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(5)
    seen["main"] = xpl.get_backend().name  # while the worker is inside its block
    release.set()
    t.join()
    assert seen == {"main": "numpy", "worker": "array_api_strict"}


def test_failed_selection_keeps_current_backend():
    with pytest.raises(BackendUnavailableError):
        xpl.set_backend("numpy", "cuda:0")
    assert xpl.get_backend().name == "numpy"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("cupy:1", ("cupy", "1")),
        ("torch:cuda:0", ("torch", "cuda:0")),
        (" JAX ", ("jax", None)),
        ("array_api_strict:device1", ("array_api_strict", "device1")),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_environment_variable_read_at_import():
    pytest.importorskip("array_api_strict")
    r = _run(
        "import xplayers as x; b = x.get_backend(); print(b.name, b.device, type(x.asarray([1.0])).__module__)",
        XPLAYERS_BACKEND="array_api_strict:device1",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "array_api_strict"
    assert "device1" in r.stdout


def test_environment_variable_unknown_name_fails_on_first_use():
    r = _run("import xplayers; print('imported'); xplayers.get_backend()", XPLAYERS_BACKEND="cupyy")
    assert r.stdout.strip() == "imported"
    assert r.returncode != 0
    assert "unknown backend 'cupyy'" in r.stderr
    assert "XPLAYERS_BACKEND='cupyy'" in r.stderr


def test_environment_variable_unusable_backend_names_the_variable():
    r = _run("import xplayers as x; x.get_backend()", XPLAYERS_BACKEND="numpy:cuda:3")
    assert r.returncode != 0
    assert "BackendUnavailableError" in r.stderr
    assert "selected by XPLAYERS_BACKEND='numpy:cuda:3'" in r.stderr


def test_import_loads_no_optional_backend():
    code = (
        "import sys, xplayers, xplayers.functional, xplayers.layers\n"
        "loaded = [m for m in ('cupy', 'torch', 'jax', 'dask', 'array_api_strict') if m in sys.modules]\n"
        "print(','.join(loaded))"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_cupy_without_gpu_is_a_clear_error():
    cupy = pytest.importorskip("cupy")
    if cupy.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-GPU message cannot be produced here")
    with pytest.raises(
        BackendUnavailableError,
        match=r"backend 'cupy' is not usable: CuPy is installed but cupy\.cuda\.is_available\(\) is False.*pip install",
    ):
        xpl.set_backend("cupy")


@pytest.mark.backends("torch")
def test_torch_cuda_without_gpu_is_a_clear_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(
        BackendUnavailableError,
        match=r"backend 'torch' on 'cuda' is not usable: torch\.cuda\.is_available\(\) is False",
    ):
        xpl.set_backend("torch", "cuda")


def test_missing_backend_names_the_pip_command(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name: str, *args):
        if name == "jax":
            raise ImportError("No module named 'jax'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(
        BackendUnavailableError,
        match=r'backend .jax. is not installed.*pip install "xplayers\[jax\]" \(from a source checkout: pip install "\.\[jax\]"\)',
    ):
        xpl.set_backend("jax")


def test_require_gpu_and_prefer_gpu_without_gpu(caplog):
    from xplayers.backend._registry import _try_gpu

    if _try_gpu(0)[0] is not None:
        pytest.skip("a GPU backend is usable here")
    with pytest.raises(
        BackendUnavailableError, match=r"no GPU backend is usable: cupy: .*; torch: "
    ):
        xpl.require_gpu()
    with caplog.at_level("WARNING", logger="xplayers"):
        assert xpl.prefer_gpu() is False
    assert "no GPU backend is usable, staying on numpy:cpu" in caplog.text
    assert xpl.get_backend().name == "numpy"


def test_backend_status():
    assert xpl.backend_status("numpy") == (True, "cpu")
    ok, why = xpl.backend_status("numpy", "cuda")
    assert not ok
    assert "CPU only" in why
    with pytest.raises(ValueError, match="valid names"):
        xpl.backend_status("nope")


def test_asarray_dtype_names(backend, xp):
    a = xpl.asarray([1, 2], dtype="float32")
    assert a.dtype == xp.float32
    b = xpl.asarray([1, 2], dtype=np.float64)
    assert b.dtype == xp.float64
    assert backend.to_numpy(b).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="unknown dtype 'float17'"):
        xpl.asarray([1], dtype="float17")


def test_round_trip_between_backends(backend, xp):
    """to_backend both ways keeps values and dtype bit for bit."""
    host = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    on = xpl.to_backend(host, backend.name, backend.device)
    assert xpl.namespace(on) is xp
    back = xpl.to_numpy(xpl.to_backend(on, "numpy"))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, host)


@pytest.mark.backends("torch")
def test_to_backend_shares_memory_through_dlpack():
    torch = pytest.importorskip("torch")
    host = np.arange(4.0)
    t = xpl.to_backend(host, "torch", "cpu")
    assert isinstance(t, torch.Tensor)
    assert np.shares_memory(xpl.to_numpy(t), host)


@pytest.mark.backends("torch")
def test_to_backend_copies_read_only_memory():
    pytest.importorskip("torch")
    host = np.arange(4.0)
    host.setflags(write=False)
    t = xpl.to_backend(host, "torch", "cpu")
    np.testing.assert_array_equal(xpl.to_numpy(t), host)


def test_asarray_moves_other_backend_arrays(backend, xp):
    strict = pytest.importorskip("array_api_strict")
    src = strict.asarray([1.0, 2.0])
    out = xpl.asarray(src)
    assert xpl.namespace(out) is xp
    np.testing.assert_array_equal(backend.to_numpy(out), [1.0, 2.0])


def test_namespace_is_cached():
    from xplayers.backend._core import _NAMESPACES

    xpl.namespace(np.zeros(1))
    assert np.ndarray in _NAMESPACES
    assert xpl.namespace(np.ones(2)) is _NAMESPACES[np.ndarray]


# --------------------------------------------------------------------------- the registry

OPTIONAL = ("cupy", "torch", "jax", "dask")
PACKAGE = Path(xpl.__file__).parent


def _names_of_optional_libraries(tree: ast.AST) -> list[tuple[int, str]]:
    """Imports, string constants and ``is_<lib>_array`` helpers that name an optional library."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    lib = "|".join(OPTIONAL)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in OPTIONAL]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in OPTIONAL:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and re.fullmatch(rf"({lib})([.:\[].*)?", node.value):
                found.append((node.lineno, repr(node.value)))
        elif isinstance(node, (ast.Attribute, ast.Name)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if re.fullmatch(rf"is_({lib})_(array|namespace)", name):
                found.append((node.lineno, name))
    return found


def test_only_the_registry_names_optional_array_libraries():
    """Outside xplayers/backend/, no module imports or names CuPy, torch, JAX or Dask in code."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "backend":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [
            f"xplayers/{rel}:{line}: {what}" for line, what in _names_of_optional_libraries(tree)
        ]
    assert not offenders, "name the library through its record instead:\n" + "\n".join(offenders)


def test_the_check_finds_a_named_library():
    code = 'import torch\nfrom dask import array\nx = "jax"\ny = compat.is_cupy_array(z)\n"""docstring: torch"""\n'
    assert [w for _, w in _names_of_optional_libraries(ast.parse(code))] == [
        "torch",
        "dask",
        "'jax'",
        "is_cupy_array",
    ]


def test_records_are_the_registry():
    from xplayers import backend

    assert tuple(backend.RECORDS) == xpl.BACKENDS == backend.BACKENDS
    for name, rec in backend.RECORDS.items():
        assert backend.record(name) is rec
        assert rec.name == name
        assert "pip install" in rec.install
    assert backend.record("dask").lazy
    assert [r.name for r in backend.RECORDS.values() if r.gpu] == ["cupy", "torch", "jax"]
    with pytest.raises(BackendSelectionError, match="valid names"):
        backend.record("tensorflow")


def test_install_hints_show_the_pypi_and_the_checkout_form():
    from xplayers.backend import record

    hint = record("torch").install
    assert 'pip install "xplayers[torch]"' in hint
    assert 'pip install ".[torch]"' in hint


def test_record_modules_load_without_numpy():
    """noxfile.py reads the records before NumPy is installed: they import only the standard library."""
    pytest.importorskip("nox")
    code = (
        "import sys\n"
        "for m in ('numpy', 'array_api_compat'):\n"
        "    sys.modules[m] = None  # importing them now fails\n"
        "sys.path.insert(0, '.')\n"
        "import noxfile\n"
        "print(','.join(noxfile.RECORDS))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.strip().split(",")) == set(xpl.BACKENDS)


def test_report_lists_every_backend_without_allocating():
    from xplayers.backend import report

    entries = {e.name: e for e in report()}
    assert list(entries) == list(xpl.BACKENDS)
    assert entries["numpy"].usable
    assert entries["numpy"].devices == ("cpu",)
    for e in entries.values():
        assert e.installed or not e.usable
        assert e.usable == (e.why_not is None)
        assert e.name in e.line()
    if entries["array_api_strict"].usable:
        assert "device1" in entries["array_api_strict"].devices


def test_sync_accepts_arrays_and_containers(backend, xp):
    from xplayers.backend import sync

    x = backend.asarray([1.0, 2.0])
    sync(x)
    sync({"W": x, "rest": [x * 2, (x,)]})


def test_kernels_are_none_unless_a_record_names_a_module():
    from xplayers.backend import RECORDS

    for rec in RECORDS.values():
        assert rec.kernels is None or rec.kernels.startswith("xplayers.backend.kernels_")


# --------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_to_numpy_of_half_precision(backend, xp, dtype):
    """bfloat16 comes back as float32 (NumPy has none; exact); float16 stays float16."""
    if not hasattr(xp, dtype):
        pytest.skip(f"{backend.name} has no {dtype}")
    values = [1.0, -2.5, 3.0e38 if dtype == "bfloat16" else 60000.0]
    x = xp.asarray(values, dtype=getattr(xp, dtype))
    host = xpl.to_numpy(x)
    assert host.dtype == (np.float32 if dtype == "bfloat16" else np.float16)
    np.testing.assert_allclose(host, np.asarray(values, dtype=np.float32), rtol=1e-2)


@pytest.mark.backends("torch")
def test_to_numpy_of_a_torch_bfloat16_tensor():
    torch = pytest.importorskip("torch")
    t = torch.tensor([1.5, -3.0], dtype=torch.bfloat16, requires_grad=True)
    host = xpl.to_numpy(t)
    assert host.dtype == np.float32
    assert host.tolist() == [1.5, -3.0]
    assert xpl.to_numpy(torch.tensor([1.5], dtype=torch.float16)).dtype == np.float16


def test_bad_environment_variable_is_a_clean_value_error():
    r = _run(
        "import xplayers as x\n"
        "from xplayers.errors import BackendSelectionError\n"
        "try:\n"
        "    x.get_backend()\n"
        "except BackendSelectionError as e:\n"
        "    print(isinstance(e, ValueError), isinstance(e, x.XplayersError), e)\n",
        XPLAYERS_BACKEND="tensorflow:0",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("True True unknown backend 'tensorflow'")


@pytest.mark.parametrize(
    "spec", ["tensorflow", "numpy:cuda:3", "torch:meta", "array_api_strict:nope"]
)
@pytest.mark.parametrize("command", ["info", "train", "evaluate"])
def test_cli_with_a_bad_environment_variable_prints_one_line(
    spec, command, tmp_path, monkeypatch, capsys
):
    """As if XPLAYERS_BACKEND=spec had been set at import (in-process: no interpreter start-up)."""
    from xplayers.backend import _registry
    from xplayers.cli import main

    if spec.startswith("torch") and not xpl.backend_status("torch")[0]:
        pytest.skip("torch is not usable here")
    monkeypatch.setenv("XPLAYERS_BACKEND", spec)
    monkeypatch.setattr(_registry, "_ENV_SPEC", _registry._read_env())
    monkeypatch.setattr(_registry, "_global", None)
    args = {"info": [], "train": ["--iterations", "1"], "evaluate": [str(tmp_path / "m.npz")]}
    code = main([command, *args[command]])
    out, err = capsys.readouterr()
    if command == "info":
        assert code == 0, err
        assert "current backend: unusable:" in out
        assert f"XPLAYERS_BACKEND={spec!r}" in out
    else:
        assert code != 0
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("xplayers: error:")


def test_cli_with_a_bad_environment_variable_in_a_fresh_process():
    r = subprocess.run(
        [sys.executable, "-m", "xplayers", "train", "--iterations", "1"],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "XPLAYERS_BACKEND": "tensorflow"},
        check=False,
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("xplayers: error: unknown backend 'tensorflow'"), r.stderr


@pytest.mark.backends("torch")
def test_torch_meta_device_is_refused():
    pytest.importorskip("torch")
    with pytest.raises(BackendUnavailableError, match=r"device 'meta' is not supported"):
        xpl.set_backend("torch", "meta")
    ok, why = xpl.backend_status("torch", "meta")
    assert not ok
    assert "not supported" in why
    assert xpl.get_backend().name == "numpy"


@pytest.mark.backends("torch")
def test_torch_device_message_names_any_gpu_number():
    """The accepted devices read as a rule (``cuda:N``), not as one example GPU."""
    pytest.importorskip("torch")
    with pytest.raises(BackendUnavailableError) as info:
        xpl.set_backend("torch", "tpu")
    message = str(info.value)
    assert "'cuda:N' (GPU number N, from 0)" in message
    assert "cuda:1" not in message
    assert xpl.get_backend().name == "numpy"


@pytest.mark.parametrize("name", ["torch", "jax", "cupy"])
def test_gpu_device_examples_are_rules_not_one_gpu(name):
    examples = xpl.backend.record(name).device_examples()
    assert "(GPU number N, from 0)" in examples
    assert ":1" not in examples


@pytest.mark.parametrize("device", [3.5, True, object(), ["cpu"], b"cpu"])
@pytest.mark.parametrize("name", ["numpy", "array_api_strict", "torch", "jax", "dask", "cupy"])
def test_devices_of_the_wrong_type_are_refused_up_front(name, device):
    ok, _ = xpl.backend_status(name)
    if not ok and name != "cupy":
        pytest.skip(f"{name} is not usable here")
    if name == "cupy" and not xpl.backend.record("cupy").installed():
        pytest.skip("cupy is not installed")
    with (
        pytest.raises(BackendSelectionError, match=r"argument 'device': expected a string"),
        xpl.use_backend(name, device),
    ):
        pass
    with pytest.raises(ValueError, match="argument 'device'"):
        xpl.set_backend(name, device)
    assert xpl.get_backend().name == "numpy"


def test_a_device_number_jax_does_not_have_is_refused_up_front():
    if not xpl.backend_status("jax")[0]:
        pytest.skip("jax is not usable here")
    with (
        pytest.raises(
            BackendUnavailableError, match=r"backend 'jax': no device 5 .*available: cpu:0"
        ),
        xpl.use_backend("jax", 5),
    ):
        pass
    with xpl.use_backend("jax", 0) as b:
        assert b.device.platform in ("cpu", "gpu")


def test_library_device_objects_are_accepted(backend):
    """The backend's own device object (as Backend.device holds it) selects the same backend."""
    with xpl.use_backend(backend.name, backend.device) as b:
        assert b == backend.backend


# --------------------------------------------------------------------------- contexts


def test_task_created_in_a_block_keeps_its_backend():
    pytest.importorskip("array_api_strict")
    import asyncio

    async def name_later(wait: asyncio.Event) -> str:
        await wait.wait()
        return xpl.get_backend().name

    async def main() -> tuple[str, str, str]:
        go = asyncio.Event()
        with xpl.use_backend("array_api_strict"):
            inside = asyncio.create_task(name_later(go))
        outside = asyncio.create_task(name_later(go))
        here = xpl.get_backend().name
        go.set()
        return await inside, await outside, here

    assert asyncio.run(main()) == ("array_api_strict", "numpy", "numpy")


def test_tasks_outside_a_block_see_the_process_wide_backend():
    pytest.importorskip("array_api_strict")
    import asyncio

    async def inside_block(entered: asyncio.Event, release: asyncio.Event) -> str:
        with xpl.use_backend("array_api_strict"):
            entered.set()
            await release.wait()
            return xpl.get_backend().name

    async def main() -> tuple[str, str]:
        entered, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(inside_block(entered, release))
        await entered.wait()
        seen = xpl.get_backend().name  # while the other task is inside its block
        release.set()
        return seen, await task

    assert asyncio.run(main()) == ("numpy", "array_api_strict")


def test_exiting_a_block_in_another_context_is_a_clear_error():
    import contextvars

    from xplayers.backend._registry import _scoped
    from xplayers.errors import BackendContextError

    before = _scoped.get()
    block = xpl.use_backend("numpy")
    block.__enter__()
    try:
        with pytest.raises(BackendContextError, match=r"exited in another context"):
            contextvars.copy_context().run(block.__exit__, None, None, None)
    finally:
        _scoped.set(before)  # what the block could not undo from the other context


def test_reading_waits_for_device_arrays_only(backend):
    """Host reads of GPU and JAX arrays wait for queued work; of host-memory arrays they don't."""
    from xplayers.backend import reading_waits

    x = backend.asarray(np.ones(3))
    on_gpu = backend.name in ("cupy", "torch") and "cpu" not in str(backend.device)
    expected = backend.name == "jax" or on_gpu
    assert reading_waits(x) is expected
    assert reading_waits(np.ones(3)) is False


def test_reversed_host_views_move_to_every_backend(backend):
    """``x[:, ::-1]`` (the book's reversed questions) has a negative stride: copied, not aborted.

    In a subprocess: torch's ``from_dlpack`` ends the process on such a view.
    """
    code = (
        "import numpy as np, xplayers as xpl; x = np.arange(6).reshape(2, 3)[:, ::-1]; "
        f"y = xpl.to_backend(x, {backend.name!r}); "
        "assert xpl.to_numpy(y).tolist() == [[2, 1, 0], [5, 4, 3]]; print('ok')"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(  # noqa: PLW1510 (the return code is asserted with the output)
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("name", ["jax", "torch", "dask", "array_api_strict"])
def test_first_use_of_a_backend_leaves_numpys_global_generator(name: str) -> None:
    """Importing JAX draws from ``numpy.random``: a script's ``np.random.seed`` must still hold.

    The book's scripts seed the global generator and then build their
    weights with it; a backend imported on first use in between would
    change those weights on that backend only.
    """
    pytest.importorskip(name)
    r = _run(
        "import numpy as np, xplayers as xpl\n"
        "np.random.seed(0)\n"
        f"with xpl.use_backend({name!r}):\n"
        "    xpl.get_backend().asarray(np.ones(3))\n"
        "print(repr(np.random.rand()))\n"
    )
    assert r.returncode == 0, r.stderr
    np.random.seed(0)  # noqa: NPY002 - the draw the subprocess must reproduce
    assert float(r.stdout) == np.random.rand()  # noqa: NPY002
