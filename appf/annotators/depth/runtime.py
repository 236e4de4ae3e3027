"""Torch runtime choices for the learned depth backends: optional imports, device, precision.

torch, transformers and MoGe are optional: nothing here imports them at module import, so
`import appf` works without them and a backend fails only in `load()`, with a message saying
what to install.

Environment (read when a backend loads, so worker images can set them):
  APPF_DEPTH_DEVICE     auto (default) | cpu | cuda | cuda:N. auto = a GPU when there is one;
                        with several GPUs, model copies in different processes spread over them
                        by process id.
  APPF_DEPTH_PRECISION  auto (default) | fp32 | bf16 | fp16. auto = bf16 on GPUs that support it,
                        else fp16 on GPU; always fp32 on CPU.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType
from typing import Any

from appf.schemas import AppfError

DEVICE_ENV = "APPF_DEPTH_DEVICE"
PRECISION_ENV = "APPF_DEPTH_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class BackendUnavailableError(AppfError):
    """A registered backend cannot run here (missing optional package or code checkout)."""


def import_optional(module: str, backend: str, install_hint: str) -> ModuleType:
    """Import `module` or raise one clear error naming the backend and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"depth backend {backend!r} needs the Python module {module!r}, which cannot be "
            f"imported here ({type(e).__name__}: {e}); install it with: {install_hint}"
        ) from e


def select_device(preference: str | None = None) -> Any:
    """A torch.device from `preference` (or $APPF_DEPTH_DEVICE, default auto)."""
    import torch

    pref = (preference or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if pref == "auto":
        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return torch.device(f"cuda:{os.getpid() % n}" if n > 1 else "cuda")
        return torch.device("cpu")
    device = torch.device(pref)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"depth device {pref!r} was requested ({DEVICE_ENV} or --device) but torch sees no "
            "CUDA GPU here; use cpu or auto")
    return device


def select_dtype(device: Any, preference: str | None = None) -> Any:
    """Compute dtype for autocast: fp32 on CPU; bf16 (if supported) or fp16 on GPU."""
    import torch

    pref = (preference or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if pref not in PRECISIONS:
        raise BackendUnavailableError(f"depth precision must be one of {PRECISIONS}, got {pref!r}")
    if device.type != "cuda" or pref == "fp32":
        return torch.float32
    if pref == "fp16":
        return torch.float16
    if pref == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: Any, dtype: Any) -> contextlib.AbstractContextManager:
    """Mixed-precision context for a forward pass (a no-op for fp32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class WrapsBuiltModel:
    """`from_model` for learned backends: wrap an already built network (tests, benchmarks)
    instead of loading weights. The class provides `_attach(model)`."""

    @classmethod
    def from_model(cls, model: Any, weights_id: str = "in-memory", revision: str = "random-init",
                   **kwargs: Any):
        self = cls(**kwargs)
        self.weights_id, self.revision = weights_id, revision
        self._attach(model)
        return self
