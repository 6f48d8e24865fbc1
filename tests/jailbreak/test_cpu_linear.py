"""oneDNN's float32 linear on CPU: the same products as F.linear, only without gradients, and
nn.Linear restored after the block whatever happens in it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsafe_utils.jailbreak.cpu_linear import linear, onednn_available, onednn_linears


@pytest.mark.parametrize("shape", [(7, 33), (2, 9, 33)])
@pytest.mark.parametrize("bias", [False, True])
def test_same_product_as_f_linear(shape, bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator)
    weight = torch.randn(12, 33, generator=generator)
    b = torch.randn(12, generator=generator) if bias else None
    with torch.no_grad():
        assert torch.allclose(linear(x, weight, b), F.linear(x, weight, b), atol=1e-5)


def test_onednn_in_this_build():
    assert onednn_available()  # the CPU wheel this project installs has it


def test_gradients_still_flow():
    weight = torch.randn(4, 6, requires_grad=True)
    out = linear(torch.randn(3, 6), weight)
    out.sum().backward()
    assert weight.grad is not None and weight.grad.shape == weight.shape


def test_linears_routed_within_the_block_and_restored_after():
    layer = torch.nn.Linear(6, 4)
    x = torch.randn(2, 6)
    original = torch.nn.Linear.forward
    with torch.no_grad():
        expected = layer(x)
        with onednn_linears():
            assert torch.nn.Linear.forward is not original
            assert torch.allclose(layer(x), expected, atol=1e-6)
        assert torch.nn.Linear.forward is original
        with pytest.raises(ValueError, match="a failing batch"), onednn_linears():
            raise ValueError("a failing batch")
        assert torch.nn.Linear.forward is original
