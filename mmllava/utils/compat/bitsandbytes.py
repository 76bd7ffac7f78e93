"""bitsandbytes (an optional extra, ``pip install -e ".[qlora]"``): import it with the install
hint, and quantize a float weight to 4 bits on a given device, whatever the version.

Why a shim: ``Params4bit`` quantizes as a side effect of ``.to(device)``, and which devices do
so has changed between releases: CUDA only before the multi-backend work, CPU as well since
(0.50.2 quantizes, runs and backpropagates NF4 on this machine's CPU). Its constructor
keywords (``quant_storage``, ``module``) have grown too. :func:`make_linear4bit` passes only
the keywords the installed version takes and checks that quantization happened, so an old
version on CPU fails with the reason instead of training on an unquantized weight.

:func:`fix_cpu_dequantize_4bit`: bitsandbytes 0.50.2's native CPU ``dequantize_4bit`` kernel
takes the blocks row by row, while ``quantize_4bit`` makes them over the flattened tensor: for
a layer whose ``in_features`` is not a multiple of the block size (64), such as the tiny
LLaMA's ``down_proj`` (352), the weights it computes with are wrong (25% relative error
instead of NF4's 9%, measured here), in the forward and the backward alike. The 7B shapes
(4096, 11008) are multiples of 64, and CUDA has its own kernels. Where a self-test finds the
fault, the CPU kernel is replaced by bitsandbytes' own device-generic one (correct, slower).
"""
import functools
import importlib
import inspect

import torch

INSTALL_HINT = 'pip install -e ".[qlora]" (or pip install bitsandbytes)'


@functools.lru_cache(maxsize=None)
def _bnb_or_none():
    try:
        return importlib.import_module('bitsandbytes')
    except Exception:  # ImportError, or a broken native library raising something else
        return None


def bitsandbytes_available() -> bool:
    """Whether bitsandbytes imports here (asked once per process)."""
    return _bnb_or_none() is not None


def import_bitsandbytes():
    """The ``bitsandbytes`` module, or an ImportError saying how to install it."""
    try:
        return importlib.import_module('bitsandbytes')
    except Exception as e:
        raise ImportError(f'QLoRA (model.llm.quantization_config) needs bitsandbytes: '
                          f'{INSTALL_HINT}. Import failed with: {e}') from e


def _supported(func, kwargs: dict) -> dict:
    """``kwargs`` restricted to the parameters ``func`` takes (all if it takes ``**kwargs``)."""
    params = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


@functools.lru_cache(maxsize=None)
def fix_cpu_dequantize_4bit() -> bool:
    """Replace bitsandbytes' CPU ``dequantize_4bit`` kernel if it dequantizes wrongly a tensor
    whose rows are not a whole number of blocks (see the module doc). Asked once a process.

    Returns:
        bool: Whether the kernel was replaced.

    Raises:
        RuntimeError: The fault is there and this version's generic kernel cannot be found.
    """
    functional = import_bitsandbytes().functional
    w = torch.linspace(-1, 1, 2 * 96).reshape(2, 96)  # rows of 1.5 blocks of 64
    packed, state = functional.quantize_4bit(w, blocksize=64, quant_type='nf4',
                                             compress_statistics=False)
    if (functional.dequantize_4bit(packed, state) - w).abs().max() < 0.1:
        return False  # NF4's largest step is 0.16 of absmax: half of it bounds the error
    try:
        from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
        from bitsandbytes.backends.utils import _get_4bit_code
    except ImportError as e:
        raise RuntimeError('This bitsandbytes dequantizes 4-bit weights wrongly on CPU for '
                           'rows that are not a multiple of 64 values, and its generic kernel '
                           'was not found: run QLoRA on a GPU') from e

    # Eager: bitsandbytes wraps it in torch.compile(dynamic=False), which compiles anew for
    # each weight shape (seconds each, on CPU).
    generic = getattr(_dequantize_4bit_compute, '__wrapped__', _dequantize_4bit_compute)

    def dequantize_4bit(A, absmax, blocksize, quant_type, shape, dtype):
        if A.dtype != torch.uint8:
            A = A.view(torch.uint8)
        return generic(A.reshape(-1), absmax.float(), _get_4bit_code(quant_type, A.device),
                       blocksize, shape, dtype)

    torch.library.register_kernel('bitsandbytes::dequantize_4bit', 'cpu', dequantize_4bit)
    return True


def make_linear4bit(linear: torch.nn.Linear, quant_type: str, double_quant: bool,
                    compute_dtype: torch.dtype,
                    quant_storage: torch.dtype = torch.uint8) -> torch.nn.Module:
    """A ``bnb.nn.Linear4bit`` holding ``linear``'s weights, quantized on their device.

    Args:
        linear (nn.Linear): A float linear layer (not on the meta device); left untouched.
        quant_type (str): ``'nf4'`` or ``'fp4'``.
        double_quant (bool): Quantize the per-block scales too (``compress_statistics``).
        compute_dtype (torch.dtype): The dtype the matmul runs in.
        quant_storage (torch.dtype): The packed weight's storage dtype.

    Returns:
        nn.Module: The 4-bit layer, with the bias (if any) kept float.

    Raises:
        RuntimeError: The installed bitsandbytes does not quantize on that device.
    """
    bnb = import_bitsandbytes()
    device = linear.weight.device
    if device.type == 'meta':
        raise RuntimeError('Cannot quantize a weight on the meta device: load or '
                           'materialize the weights first')
    if device.type == 'cpu':
        fix_cpu_dequantize_4bit()
    kwargs = _supported(bnb.nn.Linear4bit.__init__, dict(
        bias=linear.bias is not None, compute_dtype=compute_dtype,
        compress_statistics=double_quant, quant_type=quant_type, quant_storage=quant_storage,
        device='meta'))
    module = bnb.nn.Linear4bit(linear.in_features, linear.out_features, **kwargs)
    param_kwargs = _supported(bnb.nn.Params4bit.__new__, dict(
        requires_grad=False, compress_statistics=double_quant, quant_type=quant_type,
        quant_storage=quant_storage, module=module))
    weight = bnb.nn.Params4bit(linear.weight.detach().clone(), **param_kwargs).to(device)
    if not getattr(weight, 'bnb_quantized', weight.dtype != linear.weight.dtype):
        raise RuntimeError(f'bitsandbytes {getattr(bnb, "__version__", "?")} does not quantize '
                           f'4-bit weights on {device.type}: run QLoRA on a CUDA GPU, or '
                           'install a bitsandbytes with a CPU backend (0.50.2 has one)')
    module.weight = weight
    if hasattr(module, 'support_avx512bf16_for_cpu'):
        # 0.50.2 repacks the weight for a CPU gemm kernel on its first no-grad eval forward:
        # that kernel asserts on widths not a multiple of its tile (an 8-wide layer fails) and
        # bypasses the dequantization fixed above. Keep one path for training and evaluation.
        module.support_avx512bf16_for_cpu = False
    if hasattr(module, 'quant_state'):
        module.quant_state = weight.quant_state
    if linear.bias is not None:
        module.bias = torch.nn.Parameter(linear.bias.detach().clone(),
                                         requires_grad=linear.bias.requires_grad)
    return module


def is_linear4bit(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a bitsandbytes 4-bit linear layer (False without bitsandbytes)."""
    bnb = _bnb_or_none()
    return bnb is not None and isinstance(module, bnb.nn.Linear4bit)
