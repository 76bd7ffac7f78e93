"""Dynamic int8 quantization of the LLM's linear layers, for CPU inference (``--load-8bit``).

Why not ``torch.ao.quantization.quantize_dynamic``: it still runs in torch 2.14 but is
deprecated (its warning points to torchao, which is not a dependency), it quantizes weights per
tensor, and its packed weights are opaque. :class:`Int8DynamicLinear` does the same job with
plain int8 tensors and torch's ``torch._int_mm`` (the int8 x int8 -> int32 matmul that
inductor and torchao build on): weights per output channel, activations per token, both
symmetric, quantized at run time, hence "dynamic".

GPU users take 4-bit (or 8-bit) through bitsandbytes instead: see ``docs/quantization.md``.
"""
from typing import Iterable, Tuple

import torch
from torch import nn

__all__ = ['Int8DynamicLinear', 'module_bytes', 'quantize_activations', 'quantize_llm_int8',
           'quantize_rows']

# Keep these float: lm_head picks the greedy token straight from its outputs (bitsandbytes'
# LLM.int8 keeps it float for the same reason), and is often tied to the input embeddings.
DEFAULT_SKIP = ('lm_head', )


def quantize_rows(weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: ``(int8 rows, scales)``, scale = absmax / 127."""
    weight = weight.detach().float()
    scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def quantize_activations(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row of ``x`` (per token): ``(int8 rows (N, K), scales (N, 1))``."""
    rows = x.reshape(-1, x.shape[-1]).float()
    x_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
    return torch.round(rows / x_scale).clamp(-127, 127).to(torch.int8), x_scale


class Int8DynamicLinear(nn.Module):
    """A linear layer with int8 weights and activations quantized on the fly.

    ``y = (round(x / sx) @ round(W / sw).T) * sx * sw + b`` with ``sx`` per row of ``x``
    (per token) and ``sw`` per output channel, both ``absmax / 127``; the int8 matmul
    accumulates in int32, so only rounding (not overflow) costs accuracy.

    Args:
        in_features (int): Input width.
        out_features (int): Output width.
        bias (bool): Whether the layer has a bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.register_buffer('weight_int8',
                             torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer('weight_scale', torch.ones(out_features, dtype=torch.float32))
        self.register_buffer('bias', torch.zeros(out_features) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear) -> 'Int8DynamicLinear':
        """Quantize a float ``nn.Linear`` (its weights are copied, the original is untouched)."""
        weight_int8, scale = quantize_rows(linear.weight)
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        module.weight_int8.copy_(weight_int8)
        module.weight_scale.copy_(scale)
        if linear.bias is not None:
            module.bias = linear.bias.detach().float().clone()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != 'cpu':
            raise RuntimeError('Int8DynamicLinear runs on CPU only')
        shape = x.shape
        x_int8, x_scale = quantize_activations(x)
        out = torch._int_mm(x_int8, self.weight_int8.t()).float()
        out = out * x_scale * self.weight_scale
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'bias={self.bias is not None}, int8 per-channel weights, dynamic per-token '
                'activations')


def quantize_llm_int8(model: nn.Module, skip: Iterable[str] = DEFAULT_SKIP) -> nn.Module:
    """Replace the LLM's ``nn.Linear`` layers by :class:`Int8DynamicLinear`, in place.

    Only ``model.llm`` changes (attention and MLP projections); the vision tower and the
    projector stay float, as does ``lm_head`` (see ``DEFAULT_SKIP``). Run it after the
    weights load, on a CPU model, for inference only (the int8 layers do not train).

    Args:
        model: A LLaVA (anything with an ``llm`` attribute), or a bare causal LM.
        skip: Names of submodules of the LLM (exact names or last name parts) left float.

    Returns:
        The same model, quantized.
    """
    llm = getattr(model, 'llm', model)
    if any(p.device.type != 'cpu' for p in model.parameters()):
        raise ValueError('int8 quantization (load_8bit) runs on CPU only; on a GPU, load the '
                         'LLM in 4 or 8 bits through bitsandbytes (docs/quantization.md)')
    names = [name for name, _ in llm.named_modules()]
    if any('lora_' in name for name in names):
        raise ValueError('The LLM holds LoRA adapters: merge them first '
                         '(mmllava.models.merge_lora), then quantize')
    skip = tuple(skip)
    targets = [(name, module) for name, module in llm.named_modules()
               if type(module) is nn.Linear  # subclasses (adapters ...) are left alone
               and name not in skip and name.rsplit('.', 1)[-1] not in skip]
    for name, module in targets:
        parent_name, _, child = name.rpartition('.')
        parent = llm.get_submodule(parent_name) if parent_name else llm
        setattr(parent, child, Int8DynamicLinear.from_float(module))
    return model


def module_bytes(module: nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (each storage counted once)."""
    seen, total = set(), 0
    tensors: Iterable[Tuple[str, torch.Tensor]] = list(module.named_parameters()) + list(
        module.named_buffers())
    for _, tensor in tensors:
        key = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total
