"""The one resize that brings a face to the model's input size, wherever the model runs.

Training, evaluation, the pseudo-label pass, ``fer-predict`` and the exported ONNX graph
all call :func:`resize`, so a face gives the same probabilities in each of them. It is
the filter OpenCV's CPU pipelines use (``cv2.INTER_AREA`` when shrinking: every output
pixel the mean of the source area it covers; ``cv2.INTER_LINEAR`` when enlarging: half-
pixel centres), written as two weight matrices (height, width) built from the input's
shape with plain tensor ops. Matrices, not ``F.interpolate``: an ONNX ``Resize`` has no
area mode and its antialiased bilinear mode is another filter, while a ``MatMul`` runs
the same arithmetic in onnxruntime as in PyTorch, for any input size (dynamic axes).
"""

from __future__ import annotations

import numpy as np
import torch


def axis_weights(n_in: int | torch.SymInt, n_out: int, device: torch.device) -> torch.Tensor:
    """``[n_out, n_in]`` weights along one axis: area mean when shrinking, linear otherwise."""
    i = torch.arange(n_out, device=device, dtype=torch.float32)[:, None]
    j = torch.arange(n_in, device=device, dtype=torch.float32)[None, :]
    # the input length as a tensor (not a Python bool on it): no branch on a dynamic shape
    scale = (j[:, -1:] + 1) / n_out
    # area: the overlap of source pixel [j, j+1) with output pixel i's footprint, normalised
    overlap = torch.minimum(j + 1, (i + 1) * scale) - torch.maximum(j, i * scale)
    area = overlap.clamp(min=0) / scale
    # linear: half-pixel centres, the source position clamped at the first pixel
    src = ((i + 0.5) * scale - 0.5).clamp(min=0)
    last = j[:, -1:]
    left = torch.minimum(src.floor(), last)
    right = torch.minimum(left + 1, last)
    frac = src - left
    linear = (1 - frac) * (j == left) + frac * (j == right)
    return torch.where(scale > 1, area, linear)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images ``[N, C, H, W]`` to ``size`` x ``size`` (see the module docstring).

    Runs in float32 even under autocast, whose half-precision matmul would round the
    pixel values the model sees.
    """
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return resize(x.float(), size)
    rows = axis_weights(x.shape[-2], size, x.device)
    cols = axis_weights(x.shape[-1], size, x.device)
    return torch.matmul(torch.matmul(rows, x), cols.T)


def resize_image(rgb: np.ndarray, size: int) -> torch.Tensor:
    """One HWC uint8 image to a float ``[3, size, size]`` tensor, by :func:`resize`."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float()
    return resize(x, size)[0]
