"""One dispatch for the SDC (Eq. 5): backend argument, model-wide switch, environment."""

import logging

import pytest
import torch

from sdnseg.nn import _dispatch, _gemm, _reference, _triton
from sdnseg.nn import functional as SF
from sdnseg.nn._reference import neighbour_similarity_reference, sc_reference, sdc_reference
from tests.reference import cdc_reference

F64 = torch.float64


@pytest.fixture(autouse=True)
def _clean_switch(monkeypatch):
    """No process-wide setting and no environment variable left by others."""
    monkeypatch.setattr(_dispatch, "_backend", None)
    monkeypatch.delenv("SDNSEG_SDC_BACKEND", raising=False)


def _inputs(seed=0, dtype=F64, n=2, ci=3, co=4, cf=5, h=5, w=6):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, ci, h, w, generator=g, dtype=dtype)
    v = torch.randn(n, cf, h, w, generator=g, dtype=dtype)
    weight = torch.randn(co, ci, 3, 3, generator=g, dtype=dtype)
    bias = torch.randn(co, generator=g, dtype=dtype)
    return u, v, weight, bias


def _spy(monkeypatch, module, name):
    """Count the calls of ``module.name``, which keeps working."""
    calls = []
    fn = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or fn(*a, **k))
    return calls


@pytest.mark.parametrize("backend", ["auto", "reference", "torch", "torch-only", None])
def test_every_cpu_backend_equals_the_reference(backend):
    u, v, weight, bias = _inputs()
    expected = sdc_reference(u, v, weight, bias, 2, "exp", lam=0.8)
    y = SF.semantic_difference_conv2d(u, v, weight, bias, 2, "exp", 0.8, backend=backend)
    torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
    s = SF.neighbour_similarity(v, (3, 3), 2, "perona_malik", 0.8, backend=backend)
    s_ref = neighbour_similarity_reference(v, (3, 3), 2, "perona_malik", 0.8)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)
    cdc = SF.central_difference_conv2d(u, weight, bias, 2, 0.7, backend=backend)
    torch.testing.assert_close(cdc, cdc_reference(u, weight, bias, 2, 0.7), rtol=1e-10, atol=1e-10)
    sc = SF.semantic_conv2d(u, v, weight, bias, 2, "exp", 0.8, backend=backend)
    expected_sc = sc_reference(u, v, weight, bias, 2, "exp", lam=0.8)
    torch.testing.assert_close(sc, expected_sc, rtol=1e-10, atol=1e-10)


def test_sc_routes_reference_to_the_loop_and_triton_to_the_three_gemm_path(monkeypatch):
    loop = _spy(monkeypatch, _reference, "sc_reference")
    gemm = _spy(monkeypatch, _gemm, "semantic_conv")
    u, v, weight, bias = _inputs(dtype=torch.float32)
    SF.semantic_conv2d(u, v, weight, bias, backend="reference")
    assert (len(loop), len(gemm)) == (1, 0)
    # The Triton kernels compute differences only: a Triton route runs the three GEMMs.
    monkeypatch.setattr(_triton, "is_available", lambda: True)
    assert _dispatch.choose_route("triton", u).path == "triton"
    y = SF.semantic_conv2d(u, v, weight, bias, backend="triton")
    assert (len(loop), len(gemm)) == (1, 1)
    torch.testing.assert_close(y, sc_reference(u, v, weight, bias), rtol=1e-5, atol=1e-5)


def test_reference_backend_runs_the_loop_and_gradchecks(monkeypatch):
    calls = _spy(monkeypatch, _reference, "difference_conv")
    d2_calls = _spy(monkeypatch, _reference, "neighbour_squared_distance")
    u, v, weight, bias = _inputs(n=1, ci=2, co=2, cf=2, h=4, w=4)
    lam = torch.tensor(0.9, dtype=F64)
    leaves = [t.requires_grad_(True) for t in (u, v, weight, bias, lam)]

    def fn(u, v, weight, bias, lam):
        return SF.semantic_difference_conv2d(
            u, v, weight, bias, 1, "perona_malik", lam, "reference"
        )

    assert torch.autograd.gradcheck(fn, leaves)
    assert calls and d2_calls


def test_reference_backend_takes_any_dtype():
    u, v, weight, bias = _inputs(dtype=torch.float32)
    y = SF.semantic_difference_conv2d(u, v, weight, bias, backend="reference")
    assert y.dtype == torch.float32
    expected = sdc_reference(u.double(), v.double(), weight.double(), bias.double())
    torch.testing.assert_close(y.double(), expected, rtol=1e-5, atol=1e-5)


def test_context_manager_sets_and_restores_the_default(monkeypatch):
    calls = _spy(monkeypatch, _reference, "difference_conv")
    u, v, weight, _ = _inputs()
    assert SF.default_backend() == "auto"
    with SF.sdc_backend("reference"):
        assert SF.default_backend() == "reference"
        SF.semantic_difference_conv2d(u, v, weight)
        with SF.sdc_backend("torch"):
            SF.semantic_difference_conv2d(u, v, weight)
        assert SF.default_backend() == "reference"
        # An explicit argument wins over the block's default.
        SF.semantic_difference_conv2d(u, v, weight, backend="torch")
    assert len(calls) == 1 and SF.default_backend() == "auto"


def test_context_manager_restores_on_exception():
    SF.set_sdc_backend("torch")
    with pytest.raises(KeyError), SF.sdc_backend("reference"):
        assert SF.default_backend() == "reference"
        raise KeyError("boom")
    assert SF.default_backend() == "torch"


def test_the_torch_path_is_the_three_gemm_one(monkeypatch):
    fused = _spy(monkeypatch, _gemm, "semantic_difference_conv")
    given = _spy(monkeypatch, _gemm, "difference_conv")
    u, v, weight, bias = _inputs()
    y = SF.semantic_difference_conv2d(u, v, weight, bias, backend="torch")
    torch.testing.assert_close(y, sdc_reference(u, v, weight, bias), rtol=1e-10, atol=1e-10)
    SF.central_difference_conv2d(u, weight, bias, backend="torch")
    assert (len(fused), len(given)) == (1, 1)


def test_set_sdc_backend_is_the_process_default_over_the_environment(monkeypatch):
    monkeypatch.setenv("SDNSEG_SDC_BACKEND", "reference")
    assert SF.default_backend() == "reference"
    SF.set_sdc_backend("torch")
    assert SF.default_backend() == "torch"
    import sdnseg.nn

    assert sdnseg.nn.sdc_backend is SF.sdc_backend
    assert sdnseg.nn.set_sdc_backend is SF.set_sdc_backend


def test_environment_is_read_at_call_time(monkeypatch):
    calls = _spy(monkeypatch, _reference, "difference_conv")
    u, v, weight, _ = _inputs()
    SF.semantic_difference_conv2d(u, v, weight)
    assert not calls
    monkeypatch.setenv("SDNSEG_SDC_BACKEND", "reference")
    SF.semantic_difference_conv2d(u, v, weight)
    assert len(calls) == 1
    monkeypatch.setenv("SDNSEG_SDC_BACKEND", "cuda")
    with pytest.raises(ValueError, match="SDNSEG_SDC_BACKEND must be one of"):
        SF.semantic_difference_conv2d(u, v, weight)


@pytest.mark.parametrize(
    "call",
    [
        lambda: SF.semantic_difference_conv2d(*_inputs(), backend="cuda"),
        lambda: SF.neighbour_similarity(_inputs()[1], (3, 3), backend="fast"),
        lambda: SF.neighbour_similarity(_inputs()[1], (3, 3), similarity="ones", backend="x"),
        lambda: SF.central_difference_conv2d(_inputs()[0], _inputs()[2], backend="Torch"),
        lambda: SF.set_sdc_backend("cuda"),
        lambda: SF.sdc_backend("cuda").__enter__(),
    ],
)
def test_unknown_backend_names_the_allowed_ones(call):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'reference', 'torch'"):
        call()


def test_forced_triton_where_it_cannot_run(monkeypatch):
    monkeypatch.setattr(_triton, "is_available", lambda: False)
    u, v, weight, _ = _inputs(dtype=torch.float32)
    with pytest.raises(RuntimeError, match="'triton' was forced"):
        SF.semantic_difference_conv2d(u, v, weight, backend="triton")
    assert _dispatch.choose_route("auto", u) == _dispatch.Route("torch")


def test_what_the_kernels_do_not_take_goes_to_the_fast_path(monkeypatch):
    monkeypatch.setattr(_triton, "is_available", lambda: True)
    assert _dispatch.choose_route("triton", torch.zeros(1, 2, 3, 3, dtype=F64)).path == "torch"
    assert _dispatch.choose_route("triton", torch.zeros(1, 2, 3, 3)).path == "triton"


def test_torch_backends_choose_the_elementwise_ops_by_device(monkeypatch):
    """``"torch"``: Triton element-wise kernels for CUDA tensors only; ``"torch-only"``: never."""
    u = torch.zeros(1, 2, 3, 3)
    for backend in ("torch", "torch-only", "auto"):
        assert _dispatch.choose_route(backend, u) == _dispatch.Route("torch", "torch")
    monkeypatch.setenv("SDNSEG_SDC_BACKEND", "torch-only")
    assert _dispatch.choose_route(None, u) == _dispatch.Route("torch", "torch")
    if not torch.cuda.is_available():
        return
    monkeypatch.setattr(_triton, "is_available", lambda: True)
    for dtype in (torch.float32, F64):  # the element-wise kernels take float64 too
        cu = u.to("cuda", dtype)
        assert _dispatch.choose_route("torch", cu) == _dispatch.Route("torch", "triton")
        assert _dispatch.choose_route("torch-only", cu) == _dispatch.Route("torch", "torch")
    assert _dispatch.choose_route("auto", u.cuda()) == _dispatch.Route("triton")
    monkeypatch.setattr(_triton, "is_available", lambda: False)
    assert _dispatch.choose_route("torch", u.cuda()) == _dispatch.Route("torch", "torch")


def test_export_path_whatever_the_backend(monkeypatch):
    monkeypatch.setattr(_dispatch, "exporting", lambda: True)
    u, v, weight, bias = _inputs()
    for backend in _dispatch.BACKENDS:
        assert _dispatch.choose_route(backend, u) == _dispatch.Route("export")
    y = SF.semantic_difference_conv2d(u, v, weight, bias, 2, backend="torch")
    torch.testing.assert_close(y, sdc_reference(u, v, weight, bias, 2), rtol=1e-10, atol=1e-10)
    gemm = _spy(monkeypatch, _gemm, "semantic_conv")
    for similarity in ("perona_malik", "ones"):
        sc = SF.semantic_conv2d(u, v, weight, bias, 2, similarity, 0.8, backend="torch")
        expected = sc_reference(u, v, weight, bias, 2, similarity, lam=0.8)
        torch.testing.assert_close(sc, expected, rtol=1e-10, atol=1e-10)
    assert not gemm  # plain pad/slice/conv ops, which export


def test_the_choice_is_logged_once_per_path_device_dtype(monkeypatch, caplog):
    monkeypatch.setattr(_dispatch, "_logged", set())
    u, v, weight, _ = _inputs()
    with caplog.at_level(logging.DEBUG, logger="sdnseg.nn._dispatch"):
        for _ in range(2):
            SF.semantic_difference_conv2d(u, v, weight, backend="reference")
        SF.semantic_difference_conv2d(u.float(), v.float(), weight.float(), backend="torch")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "SDC backend 'reference': reference path for cpu torch.float64",
        "SDC backend 'torch': torch path for cpu torch.float32",
    ]
