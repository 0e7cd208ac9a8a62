"""Input validation shared by the public functions of :mod:`convtools`.

Every public function checks its arguments here, once: the private implementations it calls
(named with a leading underscore) trust them, so that a wrong rank, a channel mismatch
or an unsupported layer raises a ``TypeError``/``ValueError`` that names the argument and
the shapes, instead of failing deep inside an ``einsum``.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_conv",
    "check_conv_pair",
    "check_finite",
    "check_image",
    "check_matrix",
    "check_nonnegative",
    "check_positive_int",
    "check_square",
    "check_tensor",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Check that ``value`` is a floating-point tensor.

    Parameters
    ----------
    name : str
        argument name used in the error message
    value : object
        candidate tensor

    Returns
    -------
    torch.Tensor
        ``value`` itself
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating-point dtype, got {value.dtype}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise ``ValueError`` if ``value`` is empty or holds NaN or infinite entries."""
    if value.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(value.shape)}): every dimension "
            "must be at least 1 (an empty batch has no statistics)"
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or infinite values (shape {tuple(value.shape)})")
    return value


def check_image(name: str, value: object, channels: int | None = None) -> torch.Tensor:
    """Check a batch of images of shape (n, C, H, W).

    Parameters
    ----------
    name : str
        argument name used in the error message
    value : object
        candidate tensor
    channels : int | None
        expected number of channels C, or None to accept any

    Returns
    -------
    torch.Tensor
        ``value`` itself
    """
    value = check_tensor(name, value)
    if value.dim() != 4:
        raise ValueError(
            f"{name} must have shape (n, C, H, W), got {value.dim()} dimensions "
            f"{tuple(value.shape)}"
        )
    if channels is not None and value.shape[1] != channels:
        raise ValueError(
            f"{name} must have {channels} channels (shape (n, {channels}, H, W)), "
            f"got shape {tuple(value.shape)}"
        )
    check_finite(name, value)
    return value


def check_matrix(
    name: str, value: object, shape: tuple[int | None, int | None] | None = None
) -> torch.Tensor:
    """Check a finite floating-point matrix, optionally of a given shape.

    Parameters
    ----------
    name : str
        argument name used in the error message
    value : object
        candidate tensor
    shape : tuple[int | None, int | None] | None
        expected shape; ``None`` entries accept any size

    Returns
    -------
    torch.Tensor
        ``value`` itself
    """
    value = check_tensor(name, value)
    if value.dim() != 2:
        raise ValueError(f"{name} must be a matrix (2 dimensions), got shape {tuple(value.shape)}")
    if shape is not None:
        for axis, expected in enumerate(shape):
            if expected is not None and value.shape[axis] != expected:
                wanted = ", ".join("*" if s is None else str(s) for s in shape)
                raise ValueError(
                    f"{name} must have shape ({wanted}), got shape {tuple(value.shape)}"
                )
    check_finite(name, value)
    return value


def check_square(name: str, value: object) -> torch.Tensor:
    """Check a finite square floating-point matrix."""
    value = check_matrix(name, value)
    if value.shape[0] != value.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(value.shape)}")
    return value


def check_nonnegative(name: str, value: object) -> float:
    """Check a finite real number >= 0 (booleans are refused); return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_positive_int(name: str, value: object) -> int:
    """Check that ``value`` is an integer >= 1 (booleans are refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_conv(name: str, conv: object) -> torch.nn.Conv2d:
    """Check that ``conv`` is a 2-D convolution this package supports.

    Supported: ``torch.nn.Conv2d`` with ``groups == 1``, ``padding_mode == "zeros"`` and an
    integer (or pair of integers) padding. String paddings ("same", "valid") are refused:
    pass the equivalent integers.

    Parameters
    ----------
    name : str
        argument name used in the error message
    conv : object
        candidate layer

    Returns
    -------
    torch.nn.Conv2d
        ``conv`` itself
    """
    if not isinstance(conv, torch.nn.Conv2d):
        raise TypeError(f"{name} must be a torch.nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"{name} must have groups=1, got groups={conv.groups}")
    if conv.padding_mode != "zeros":
        raise ValueError(
            f"{name} must use padding_mode='zeros', got padding_mode={conv.padding_mode!r}"
        )
    if isinstance(conv.padding, str):
        raise ValueError(
            f"{name} has string padding {conv.padding!r}; only integer paddings are "
            "supported (give the equivalent (ph, pw))"
        )
    return conv


def check_conv_pair(conv1: object, conv2: object) -> tuple[torch.nn.Conv2d, torch.nn.Conv2d]:
    """Check two consecutive convolutions: conv1's outputs are conv2's inputs."""
    conv1 = check_conv("conv1", conv1)
    conv2 = check_conv("conv2", conv2)
    if conv1.out_channels != conv2.in_channels:
        raise ValueError(
            f"conv1.out_channels ({conv1.out_channels}) must equal conv2.in_channels "
            f"({conv2.in_channels}): conv2.weight has shape {tuple(conv2.weight.shape)}, "
            f"conv1.weight has shape {tuple(conv1.weight.shape)}"
        )
    return conv1, conv2
