"""LoRA through peft, on the LLM's linear layers only.

The original LLaVA's target finder collects *leaf* names (``q_proj``, ``k_proj`` ...) over the
whole model and hands them to peft, which matches them everywhere: CLIP's attention has
``q_proj``/``k_proj``/``v_proj``/``out_proj`` too, so adapters land in the frozen vision tower
(LLaVA issue 1647). Here peft is applied to the LLM module alone, so no name can match outside
it, whatever ``target_modules`` says.
"""
from typing import List, Optional, Sequence, Union

from torch import nn

# The LM head maps to the vocabulary; the original leaves it out of LoRA, as do we.
_EXCLUDED = ('lm_head', )


def find_linear_names(llm: nn.Module, exclude: Sequence[str] = _EXCLUDED) -> List[str]:
    """Leaf names of the LLM's ``nn.Linear`` layers (``q_proj``, ``up_proj`` ...), sorted.

    Leaf names are safe here because they are resolved inside the LLM only.
    """
    names = set()
    for name, module in llm.named_modules():
        leaf = name.rsplit('.', 1)[-1]
        if isinstance(module, nn.Linear) and leaf not in exclude:
            names.add(leaf)
    return sorted(names)


def apply_lora(llm: nn.Module, r: int = 128, alpha: int = 256, dropout: float = 0.05,
               target_modules: Optional[Union[str, Sequence[str]]] = None,
               bias: str = 'none', **kwargs) -> nn.Module:
    """Wrap an LLM with LoRA adapters (peft ``get_peft_model``).

    peft freezes every base weight of the LLM and leaves the adapters trainable.

    Args:
        llm (nn.Module): The transformers causal LM (``Llava.llm``).
        r (int): LoRA rank. Defaults to 128 (LLaVA-1.5's LoRA recipe).
        alpha (int): LoRA alpha (scale ``alpha / r``). Defaults to 256.
        dropout (float): Dropout on the adapter input. Defaults to 0.05.
        target_modules (str | list[str], optional): Module names, resolved inside the LLM;
            ``None`` means every linear layer but the LM head (the original's choice).
        bias (str): peft's ``bias`` option. Defaults to ``'none'``.
        **kwargs: Other ``peft.LoraConfig`` arguments.

    Returns:
        nn.Module: The ``peft.PeftModel`` around ``llm``; it forwards, embeds and generates
        as the LLM does.
    """
    from peft import LoraConfig, get_peft_model

    if target_modules is None:
        target_modules = find_linear_names(llm)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(target_modules)
                        if not isinstance(target_modules, str) else target_modules,
                        bias=bias, task_type='CAUSAL_LM', **kwargs)
    return get_peft_model(llm, config)


def is_lora_llm(llm: nn.Module) -> bool:
    """Whether ``llm`` is wrapped by peft."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a requirement
        return False
    return isinstance(llm, PeftModel)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge a LLaVA's LoRA adapters into its LLM weights, in place.

    Afterwards ``model.llm`` is the plain transformers LM again and ``model.state_dict()``
    has the base layout (``llm.model.layers...``), loadable by the base config.

    Args:
        model (nn.Module): A ``Llava`` built with ``lora=...``.

    Returns:
        nn.Module: ``model``.
    """
    if not is_lora_llm(model.llm):
        raise ValueError('The model has no LoRA adapters to merge (model.llm is not a '
                         'peft model)')
    from .qlora import count_4bit_layers
    if count_4bit_layers(model.llm):
        raise ValueError('The LLM holds 4-bit (QLoRA) layers: merge the adapters into the '
                         'float base instead (tools/model_converters/merge_lora.py builds it '
                         'from the config, unquantized)')
    model.llm = model.llm.merge_and_unload()
    return model


def to_lora_keys(model: nn.Module, state_dict: dict) -> dict:
    """Rename base-layout keys (``llm.model.layers.0.self_attn.q_proj.weight``) to those of a
    LLaVA whose LLM is wrapped by peft (``llm.base_model.model.model.layers.0.self_attn.
    q_proj.base_layer.weight``), so that base weights load into a LoRA model. Keys that
    already fit, or fit nothing, are kept as they are.
    """
    if not is_lora_llm(getattr(model, 'llm', None)):
        return dict(state_dict)
    keys = set(model.state_dict())
    out = {}
    for key, value in state_dict.items():
        if key not in keys and key.startswith('llm.'):
            wrapped = 'llm.base_model.model.' + key[len('llm.'):]
            head, _, leaf = wrapped.rpartition('.')
            for candidate in (wrapped, f'{head}.base_layer.{leaf}'):
                if candidate in keys:
                    key = candidate
                    break
        out[key] = value
    return out
