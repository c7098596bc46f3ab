"""Count the floating-point tensors the package's own code sends to the host (a stand-in for a GPU on CPU).

On a CPU-only machine the model's device is the host, so a copy cannot be seen by its
effect. Instead a TorchFunctionMode records every call made from `transfer_neurons`
source that moves a floating tensor to the host or reads it there: `.cpu()`,
`.numpy()`, `.tolist()`, `.item()`, `float()`/`int()`/`bool()`, NumPy conversion, and
`.to("cpu")` (the package names the host as the string "cpu"; a `.to(tensor.device)`
keeps a tensor where it is, and is not counted).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import transfer_neurons

PACKAGE = str(Path(transfer_neurons.__file__).parent)
TORCH = str(Path(torch.__file__).parent)
_READS = {"cpu", "numpy", "tolist", "item", "__array__", "__float__", "__int__", "__bool__", "__index__"}


class HostCopies(TorchFunctionMode):
    """Within the with-block, `calls` lists (method, file:line) of every host copy the package makes,
    and `sizes` the number of elements each one copied."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.sizes: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tensor = args[0] if args else None
        to_host = name == "to" and any(isinstance(a, str) and a.startswith("cpu") for a in (*args[1:], kwargs.get("device")))
        if (name in _READS or to_host) and isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            site = package_caller()
            if site is not None:
                self.calls.append((name, site))
                self.sizes.append(tensor.numel())
        return func(*args, **kwargs)


def package_caller() -> str | None:
    """file:line of the innermost frame outside torch and this file, if it is package code."""
    frame = sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(TORCH) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    if frame is None or not frame.f_code.co_filename.startswith(PACKAGE):
        return None
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"


class DeviceWaits(TorchFunctionMode):
    """Within the with-block, `calls` lists (method, file:line) of the package's calls that would make the
    host wait for a GPU: a read of any tensor's values on the host (`.any()` under `if`, `.tolist()`, ...)
    and any `.to(device)` (from the host it waits too, unless non-blocking). Only calls from `file`
    (a file name such as "interventions.py"; None: every package file)."""

    def __init__(self, file: str | None = None) -> None:
        super().__init__()
        self.file = file
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        names_device = any(isinstance(a, (str, torch.device)) for a in (*args[1:], kwargs.get("device")))
        if name in _READS or (name == "to" and names_device) or name == "cuda":
            site = package_caller()
            if site is not None and (self.file is None or site.startswith(f"{self.file}:")):
                self.calls.append((name, site))
        return func(*args, **kwargs)
