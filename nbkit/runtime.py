"""Devices, dtypes, seeds, threads and tolerances: what every notebook sets up first."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Runtime",
    "configure",
    "disable_tf32",
    "resolve_device",
    "resolve_dtype",
    "seed_everything",
    "set_threads",
    "tolerance",
]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Relative tolerance of a check between two computations of the same numbers, per dtype:
# a few thousand times the rounding unit (1.1e-16 and 6e-8).
_TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4}


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn a ``device`` parameter into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``; ``"cuda"`` or ``"cuda:N"`` for a GPU, which must exist; or ``"auto"``: the
        first GPU when there is one, else the CPU. Case and surrounding spaces are ignored.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the text is none of these forms, or names a GPU that is not there; the message
        names the parameter ``device``.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    index = text.removeprefix("cuda:") if text.startswith("cuda:") else None
    if text != "cuda" and (index is None or not index.isdigit()):
        raise ValueError(
            f"parameter 'device' = {device!r}: must be 'cpu', 'cuda', 'cuda:N' or 'auto'"
        )
    if not torch.cuda.is_available():
        raise ValueError(
            f"parameter 'device' = {device!r}: no CUDA device is available on this "
            f"machine; use 'cpu' or 'auto'"
        )
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise ValueError(
            f"parameter 'device' = {device!r}: only {count} CUDA device(s) here "
            f"(cuda:0 to cuda:{count - 1})"
        )
    return torch.device(text)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """Turn a ``dtype`` parameter (``"float32"`` or ``"float64"``) into a torch dtype.

    Raises
    ------
    ValueError
        For any other name; the message names the parameter ``dtype``.

    Examples
    --------
    >>> resolve_dtype("float64")
    torch.float64
    """
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    text = str(dtype).strip().lower().removeprefix("torch.")
    if text not in _DTYPES:
        raise ValueError(f"parameter 'dtype' = {dtype!r}: must be 'float32' or 'float64'")
    return _DTYPES[text]


def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and PyTorch's generators (every CUDA device too).

    Parameters
    ----------
    seed : int
        In [0, 2**32 - 1] (NumPy's legacy seeding accepts no more).

    Returns
    -------
    int
        The seed.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**32):
        raise ValueError(f"parameter 'seed' = {seed!r}: must be an integer in [0, 2**32 - 1]")
    random.seed(int(seed))
    np.random.seed(int(seed))
    torch.manual_seed(int(seed))
    return int(seed)


def set_threads(threads: int) -> int:
    """Set torch's CPU thread count (0 keeps the current one) and return the count in use.

    Float32 sums depend on the thread count: the committed outputs are made with a fixed one.
    """
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def disable_tf32() -> None:
    """Keep float32 products in float32 on GPUs (no TensorFloat-32), for reproducibility."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def tolerance(
    dtype: torch.dtype, float64: float | None = None, float32: float | None = None
) -> float:
    """Relative tolerance of a check at ``dtype``.

    Parameters
    ----------
    dtype : torch.dtype
        ``torch.float64`` or ``torch.float32``.
    float64, float32 : float, optional
        Override the default for one dtype (1e-10 and 1e-4: a few thousand rounding units).

    Returns
    -------
    float

    Examples
    --------
    >>> tolerance(torch.float32)
    0.0001
    """
    chosen = {torch.float64: float64, torch.float32: float32}.get(dtype)
    return chosen if chosen is not None else _TOLERANCES[dtype]


@dataclass(frozen=True)
class Runtime:
    """What :func:`configure` resolved: device, dtype, tolerance and thread count."""

    device: torch.device
    dtype: torch.dtype
    tol: float
    threads: int

    def describe(self) -> str:
        """A short line for the notebook (no thread count: it depends on the machine)."""
        return (
            f"device {self.device.type}, {str(self.dtype).removeprefix('torch.')}, "
            f"relative tolerance {self.tol:.0e}"
        )


def configure(params, grad: bool = True) -> Runtime:
    """Apply a notebook's common parameters: seed, threads, no TF32, device and dtype.

    Parameters
    ----------
    params : NotebookParameters
        Validated parameters (``seed``, ``device``, ``dtype``, ``threads``).
    grad : bool, default True
        False turns autograd off for the whole notebook (``torch.set_grad_enabled``).

    Returns
    -------
    Runtime
    """
    device = resolve_device(params.device)
    dtype = resolve_dtype(params.dtype)
    threads = set_threads(params.threads)
    disable_tf32()
    torch.set_grad_enabled(grad)
    seed_everything(params.seed)
    return Runtime(device=device, dtype=dtype, tol=tolerance(dtype), threads=threads)
