"""float32 Linear layers on CPU through oneDNN's GEMM instead of MKL's, for inference.

PyTorch sends a float32 `F.linear` on CPU to MKL. On the development machine where this was
measured (2 cores of an AMD EPYC, family 26: AVX2 and AVX-512 F/BW/VL/VNNI/BF16, no AMX; torch's
CPU capability AVX512) oneDNN's kernel, the one torch.compile's inductor uses, is 7-14% faster on
the shapes of GCG's candidate forwards (a few hundred to a thousand rows by 576-1,536 columns), so
the candidate batches run their Linear layers through it; other CPUs may gain less. Results agree
with MKL's to float rounding. Used where no gradient is taken: the oneDNN op has no backward.

    with onednn_linears():  # every torch.nn.Linear in the block
        model(...)
    linear(x, weight)       # one product
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F


@functools.cache
def onednn_available() -> bool:
    """oneDNN's linear op is in this PyTorch build and gives F.linear's result."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x, weight = torch.randn(5, 7), torch.randn(3, 7)
        return torch.allclose(op(x, weight, None, "none", [], ""), F.linear(x, weight), atol=1e-5)
    except (AttributeError, RuntimeError):
        return False


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN for float32 CPU tensors when no gradient is recorded."""
    if (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and onednn_available()
    ):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, self.weight, self.bias)


@contextmanager
def onednn_linears() -> Iterator[None]:
    """Within the block, every torch.nn.Linear (not subclasses with their own forward, such as
    bitsandbytes' 4-bit layers) computes through `linear`. Enter it once around all the threads
    that use it, not in each: it swaps nn.Linear.forward for the whole process."""
    previous = torch.nn.Linear.forward
    torch.nn.Linear.forward = _forward
    try:
        yield
    finally:
        torch.nn.Linear.forward = previous
