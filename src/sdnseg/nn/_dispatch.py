"""Which implementation computes a semantic difference convolution (Eq. 5): one decision per call.

Both halves of Eq. 5, the neighbour distances ``d2`` behind ``S(V_{m+k}, V_m)`` and the difference
convolution ``sum_k W_k · S_k ⊙ (U_{m+k} - U_m)``, ask :func:`choose_route` which path to take:

* ``"export"``: plain pad/slice/conv ops, whenever ONNX or ``torch.export`` is tracing (custom
  autograd functions and Triton kernels do not export), whatever backend was asked for;
* ``"reference"``: the float64-exact loop of :mod:`sdnseg.nn._reference` (slow; plain autograd);
* ``"torch"``: convolution's three GEMMs plus element-wise work, :mod:`sdnseg.nn._gemm`, on any
  device. The GEMMs are ``torch.mm``/``addmm`` (cuBLAS on a GPU); the element-wise work (building
  the tap stacks D = S ⊙ ΔU, the dU/dS gathers, d2 and its gradient) is done by the Triton kernels
  of :mod:`sdnseg.nn._triton_elementwise` for CUDA tensors where Triton runs, by PyTorch ops
  elsewhere (``Route.elementwise``);
* ``"torch-only"``: the same three-GEMM path with the element-wise work in PyTorch ops on every
  device (no Triton at all; on the CPU the same as ``"torch"``);
* ``"triton"``: the fused kernels of :mod:`sdnseg.nn._triton`.

The backend asked for is, first found: the call's ``backend=`` argument; the one set by
:func:`sdc_backend` (a ``with`` block) or :func:`set_sdc_backend`; the environment variable
``SDNSEG_SDC_BACKEND``; ``"auto"``. ``"auto"`` takes Triton for CUDA tensors when it can run and
takes them (float16/32, bfloat16, under 2^31 elements per image), else the PyTorch path. Forcing
``"triton"`` where Triton cannot run is an error; inputs its kernels do not take (float64) still
go to the PyTorch path (there with the element-wise work in PyTorch ops, as before). On CUDA the
three-GEMM path with Triton element-wise kernels sits behind ``backend="torch"`` (and the one with
PyTorch element-wise ops behind ``"torch-only"``) until a GPU measurement shows it faster than
the fused Triton kernels; then it becomes ``"auto"``'s CUDA path and those kernels go.

Environment variables are read at each call (not at import), so setting one at run time works.
The state set here is process-wide (one model-wide switch, also seen by ``nn.DataParallel``'s
threads), not per thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from sdnseg.nn import _triton

__all__ = [
    "BACKENDS",
    "Route",
    "choose_route",
    "default_backend",
    "exporting",
    "sdc_backend",
    "set_sdc_backend",
]

BACKENDS = ("auto", "reference", "torch", "torch-only", "triton")
BACKEND_ENV = "SDNSEG_SDC_BACKEND"

# None: not set in this process, the environment (then the default) decides.
_backend: str | None = None
_logged: set[tuple] = set()
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """The path one SDC call takes: ``"export"``, ``"reference"``, ``"torch"`` or ``"triton"``;
    on the ``"torch"`` path, ``elementwise`` names the ops of :func:`sdnseg.nn._gemm.elementwise_ops`
    (``"torch"`` or ``"triton"``) that do its element-wise work."""

    path: str
    elementwise: str = "torch"


def check_backend(backend: str, source: str = "backend") -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS}, got {backend!r}")
    return backend


def default_backend() -> str:
    """The backend of a call without ``backend=``: set here, else ``SDNSEG_SDC_BACKEND``, else auto."""
    if _backend is not None:
        return _backend
    return check_backend(os.environ.get(BACKEND_ENV, "auto"), BACKEND_ENV)


def set_sdc_backend(backend: str) -> None:
    """Set the process-wide SDC backend (one of :data:`BACKENDS`).

    ``"auto"``: Triton for CUDA tensors when available, else the three-GEMM PyTorch path;
    ``"reference"``: the plain float64-exact loop (slow); ``"torch"``: always the three-GEMM path
    (element-wise Triton kernels on CUDA); ``"torch-only"``: the three-GEMM path in PyTorch ops
    only; ``"triton"``: always Triton (an error where it cannot run). Overrides
    ``SDNSEG_SDC_BACKEND``.
    """
    global _backend
    _backend = check_backend(backend)


@contextlib.contextmanager
def sdc_backend(backend: str) -> Iterator[None]:
    """The default SDC backend for the ``with`` block; the previous one is restored on exit,
    also when the block raises::

        with sdnseg.nn.sdc_backend("reference"):
            y = model(x)
    """
    global _backend
    check_backend(backend)
    previous = _backend
    try:
        _backend = backend
        yield
    finally:
        _backend = previous


def exporting() -> bool:
    """Custom autograd functions do not export; ONNX export takes the plain path."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def choose_route(backend: str | None, *tensors: torch.Tensor) -> Route:
    """The path for one call on ``tensors`` (the first gives the device), as the module doc says.

    Args:
        backend: one of :data:`BACKENDS`, or None for :func:`default_backend`.
        tensors: the inputs the chosen kernels must take.
    """
    asked = default_backend() if backend is None else check_backend(backend)
    if exporting():
        route = Route("export")
    elif asked == "reference":
        route = Route("reference")
    elif asked == "triton" or (asked == "auto" and tensors[0].is_cuda):
        route = _triton_route(asked == "triton", tensors)
    elif asked == "torch" and tensors[0].is_cuda and _triton.is_available():
        route = Route("torch", elementwise="triton")
    else:
        route = Route("torch")
    # Logging and the set of logged keys are side effects a compiler trace must not record.
    if not torch.compiler.is_compiling():
        key = (route, asked, tensors[0].device.type, tensors[0].dtype)
        if key not in _logged:
            _logged.add(key)
            log.debug(
                "SDC backend %r: %s path%s for %s %s",
                asked,
                route.path,
                "" if route.elementwise == "torch" else f" ({route.elementwise} element-wise ops)",
                tensors[0].device.type,
                tensors[0].dtype,
            )
    return route


def _triton_route(forced: bool, tensors: tuple[torch.Tensor, ...]) -> Route:
    if not _triton.is_available():
        if forced:
            raise RuntimeError("SDC backend 'triton' was forced but Triton cannot run here")
        return Route("torch")
    # What the kernels do not take (float64, over 2^31 elements per image) runs on PyTorch.
    return Route("triton" if all(_triton.supports(t) for t in tensors) else "torch")
