"""QLoRA: the LLM's linear layers in 4-bit NF4 (bitsandbytes), LoRA adapters on top.

As xtuner's QLoRA LLaVA recipes (and the QLoRA paper): NF4 weights with double quantization,
bf16 compute, LoRA on every linear layer of the LLM, ``lm_head`` kept float; the vision tower
stays frozen and float, the projector float and trained. The config names it as transformers
does: ``model.llm.quantization_config`` holds ``BitsAndBytesConfig`` keyword arguments.

When the quantization happens: ``HFCausalLM`` builds the LLM from an explicit config (no hub)
and only *marks* it (:func:`mark_for_quantization`); the runner quantizes after ``load_base``,
``load_from`` and ``resume`` (:func:`apply_pending_quantization`, called by
``LlavaRunner.load_or_resume``). So a converted fp16/fp32 checkpoint loads as it does into
the LoRA recipe (same keys, same shapes), and each targeted linear then becomes a
``bnb.nn.Linear4bit`` on the device its weight lies on. Building the LLM in bf16
(``torch_dtype='bfloat16'``) keeps the float copy at half the size until then (7B: 13.5 GB).
Afterwards, as peft's ``prepare_model_for_kbit_training``, the LLM's other fp16/bf16 tensors
(embeddings, norms, ``lm_head``) are cast to fp32; gradient checkpointing is the LLM's own
(``gradient_checkpointing=True``, non-reentrant, so the frozen embeddings need no input grads).

Whatever builds the model outside the runner (``merge_lora.py``, ``get_model``) gets the float
LLM: adapters merge into the float base, never into 4-bit weights.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

__all__ = [
    'QLoRASpec', 'parse_quantization_config', 'mark_for_quantization', 'pending_quantization',
    'quantization_targets', 'quantize_llm_4bit', 'apply_pending_quantization',
    'count_4bit_layers', 'check_qlora_runner_cfg'
]

_ATTR = 'mmllava_qlora'
# transformers' BitsAndBytesConfig keys we act on, and those that only matter for 8 bits.
_KEYS = {'load_in_4bit', 'load_in_8bit', 'bnb_4bit_quant_type', 'bnb_4bit_use_double_quant',
         'bnb_4bit_compute_dtype', 'bnb_4bit_quant_storage', 'llm_int8_skip_modules'}
_INT8_ONLY = {'llm_int8_threshold', 'llm_int8_has_fp16_weight',
              'llm_int8_enable_fp32_cpu_offload'}


@dataclass(frozen=True)
class QLoRASpec:
    """How the LLM's linears are quantized (from ``BitsAndBytesConfig`` keyword arguments)."""
    quant_type: str = 'nf4'
    double_quant: bool = True
    compute_dtype: torch.dtype = torch.bfloat16
    quant_storage: torch.dtype = torch.uint8
    skip_modules: Tuple[str, ...] = ('lm_head', )


def _dtype(value, key: str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    dtype = getattr(torch, str(value), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f'quantization_config.{key}: {value!r} is not a torch dtype')
    return dtype


def parse_quantization_config(cfg: dict) -> QLoRASpec:
    """Check ``BitsAndBytesConfig`` keyword arguments and turn them into a :class:`QLoRASpec`.

    Needs no bitsandbytes (configs build and are checked without it).

    Raises:
        ValueError: Not 4-bit, an unknown key, or a bad value.
    """
    cfg = dict(cfg)
    cfg.pop('type', None)  # xtuner-style dict(type=BitsAndBytesConfig, ...)
    unknown = set(cfg) - _KEYS - _INT8_ONLY
    if unknown:
        raise ValueError(f'quantization_config: unknown keys {sorted(unknown)}; known: '
                         f'{sorted(_KEYS | _INT8_ONLY)}')
    if cfg.get('load_in_8bit'):
        raise ValueError('quantization_config: load_in_8bit is not supported for training '
                         'here; QLoRA takes load_in_4bit=True')
    if not cfg.get('load_in_4bit'):
        raise ValueError('quantization_config: QLoRA needs load_in_4bit=True')
    quant_type = cfg.get('bnb_4bit_quant_type', 'nf4')
    if quant_type not in ('nf4', 'fp4'):
        raise ValueError(f"quantization_config.bnb_4bit_quant_type: 'nf4' or 'fp4', got "
                         f'{quant_type!r}')
    skip = cfg.get('llm_int8_skip_modules') or ('lm_head', )
    return QLoRASpec(
        quant_type=quant_type,
        double_quant=bool(cfg.get('bnb_4bit_use_double_quant', True)),
        compute_dtype=_dtype(cfg.get('bnb_4bit_compute_dtype', 'bfloat16'),
                             'bnb_4bit_compute_dtype'),
        quant_storage=_dtype(cfg.get('bnb_4bit_quant_storage', 'uint8'),
                             'bnb_4bit_quant_storage'),
        skip_modules=tuple(skip))


def _base_llm(llm: nn.Module) -> nn.Module:
    """The transformers LM inside a peft wrapper (or ``llm`` itself)."""
    return llm.get_base_model() if hasattr(llm, 'get_base_model') else llm


def mark_for_quantization(llm: nn.Module, quantization_config: dict) -> nn.Module:
    """Mark a freshly built LLM to be quantized once its weights are loaded (see module doc)."""
    setattr(llm, _ATTR, parse_quantization_config(quantization_config))
    return llm


def pending_quantization(model: nn.Module) -> Optional[QLoRASpec]:
    """The spec of a LLaVA's (or bare LLM's) LLM marked and not yet quantized, else None."""
    llm = _base_llm(getattr(model, 'llm', model))
    return getattr(llm, _ATTR, None)


def quantization_targets(model: nn.Module, spec: Optional[QLoRASpec] = None) -> List[str]:
    """Names (in ``model``) of the linear layers QLoRA turns to 4 bits, in module order.

    Every plain ``nn.Linear`` of the LLM (inside LoRA layers: their ``base_layer``) but those
    named in ``spec.skip_modules`` (``lm_head``) and the adapters' own ``lora_A``/``lora_B``.
    Nothing outside ``model.llm`` (vision tower, projector). Works on the meta device.
    """
    spec = spec or pending_quantization(model) or QLoRASpec()
    prefix = 'llm.' if hasattr(model, 'llm') else ''
    llm = getattr(model, 'llm', model)
    names = []
    for name, module in llm.named_modules():
        parts = name.split('.')
        if type(module) is not nn.Linear:  # subclasses (peft's, bnb's) are left alone
            continue
        if any(p.startswith('lora_') for p in parts) or set(parts) & set(spec.skip_modules):
            continue
        names.append(prefix + name)
    return names


def count_4bit_layers(model: nn.Module) -> int:
    """How many bitsandbytes 4-bit linears ``model`` holds (0 without bitsandbytes)."""
    from mmllava.utils.compat.bitsandbytes import is_linear4bit
    return sum(is_linear4bit(m) for m in model.modules())


def quantize_llm_4bit(model: nn.Module, spec: Optional[QLoRASpec] = None,
                      log: Optional[Callable[[str], None]] = None,
                      prepare_for_training: bool = True) -> List[str]:
    """Replace the LLM's target linears (:func:`quantization_targets`) by 4-bit ones, in place.

    Each is quantized on the device its weight lies on (CUDA; CPU with a bitsandbytes that has
    a CPU backend). Then (``prepare_for_training``) the LLM's remaining fp16/bf16 parameters
    and buffers become fp32, and the mark is cleared. Trainable parameters (adapters,
    projector) are left as they are, so an optimizer built before still holds them. For
    inference, pass ``prepare_for_training=False`` to keep the rest in half precision.

    Returns:
        list[str]: The names quantized.

    Raises:
        ImportError: bitsandbytes is not installed (with the install hint).
        RuntimeError: A target weight is on the meta device, or the installed bitsandbytes
            cannot quantize on its device.
    """
    from mmllava.utils.compat.bitsandbytes import import_bitsandbytes, make_linear4bit
    import_bitsandbytes()
    spec = spec or pending_quantization(model) or QLoRASpec()
    names = quantization_targets(model, spec)
    for name in names:
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        setattr(parent, child, make_linear4bit(linear, spec.quant_type, spec.double_quant,
                                               spec.compute_dtype, spec.quant_storage))
        del linear
    llm = getattr(model, 'llm', model)
    if prepare_for_training:
        _float_rest_to_fp32(llm)
    base = _base_llm(llm)
    if hasattr(base, _ATTR):
        delattr(base, _ATTR)
    if log is not None:
        log(f'QLoRA: {len(names)} linear layers of the LLM quantized to 4-bit '
            f'{spec.quant_type} (double quantization: {spec.double_quant}, compute '
            f'{str(spec.compute_dtype).replace("torch.", "")}); kept float: '
            f'{", ".join(spec.skip_modules)}, the vision tower and the projector')
    return names


def _float_rest_to_fp32(llm: nn.Module) -> None:
    """peft's ``prepare_model_for_kbit_training`` cast: half-precision tensors to fp32."""
    from mmllava.utils.compat.bitsandbytes import is_linear4bit
    for module in llm.modules():
        if is_linear4bit(module):
            tensors = [('bias', module.bias)] if module.bias is not None else []
        else:
            tensors = list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False))
        for _, tensor in tensors:
            if tensor is not None and tensor.dtype in (torch.float16, torch.bfloat16):
                tensor.data = tensor.data.float()


def apply_pending_quantization(model: nn.Module,
                               log: Optional[Callable[[str], None]] = None) -> bool:
    """Quantize a marked LLM (weights loaded); a no-op for any other model.

    Returns:
        bool: Whether anything was quantized.
    """
    spec = pending_quantization(model)
    if spec is None:
        return False
    quantize_llm_4bit(model, spec, log=log)
    return True


def check_qlora_runner_cfg(cfg) -> None:
    """Refuse, before anything is built, a QLoRA run config this project cannot run.

    Raises:
        ImportError: ``model.llm.quantization_config`` is set and bitsandbytes is missing.
        ValueError: It is set together with a ``strategy`` (FSDP, DeepSpeed): the 4-bit layers
            are made by ``LlavaRunner`` after the weights load; QLoRA runs on one GPU or DDP.
    """
    llm = (cfg.get('model') or {}).get('llm') or {}
    if not isinstance(llm, dict) or llm.get('quantization_config') is None:
        return
    parse_quantization_config(llm['quantization_config'])
    if cfg.get('strategy') is not None:
        raise ValueError('QLoRA (model.llm.quantization_config) runs without a strategy (one '
                         'GPU or DDP): drop either the strategy or the quantization_config')
    from mmllava.utils.compat.bitsandbytes import import_bitsandbytes
    import_bitsandbytes()
