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


def test_gradients_are_those_of_x_wt_plus_b():
    """With gradients on, d/dx = g W, d/dW = g^T x, d/db = sum of g over rows (written out)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, generator=generator, requires_grad=True)
    weight = torch.randn(4, 6, generator=generator, requires_grad=True)
    bias = torch.randn(4, generator=generator, requires_grad=True)
    upstream = torch.randn(3, 4, generator=generator)
    grads = torch.autograd.grad((linear(x, weight, bias) * upstream).sum(), (x, weight, bias))
    expected = (upstream @ weight.detach(), upstream.T @ x.detach(), upstream.sum(0))
    for got, want in zip(grads, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)


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
