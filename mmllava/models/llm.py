"""The language model: any transformers causal LM, built from an explicit config."""
from typing import Optional

from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from mmllava.registry import MODELS


@MODELS.register_module()
def HFCausalLM(config: dict, attn_implementation: str = 'sdpa',
                    gradient_checkpointing: bool = False,
                    torch_dtype: Optional[str] = None,
                    quantization_config: Optional[dict] = None) -> PreTrainedModel:
    """Build a transformers causal LM from an explicit architecture; no hub is asked.

    Args:
        config (dict): The architecture: ``model_type`` (e.g. ``'llama'``) and that config
            class's keyword arguments (hidden_size, num_hidden_layers, vocab_size, ...).
        attn_implementation (str): ``'sdpa'`` (default), ``'eager'`` or ``'flash_attention_2'``.
        gradient_checkpointing (bool): Enable activation checkpointing in the decoder.
        torch_dtype (str, optional): Build in this dtype (e.g. ``'bfloat16'``).
        quantization_config (dict, optional): QLoRA: transformers' ``BitsAndBytesConfig``
            keyword arguments (``load_in_4bit=True``, ``bnb_4bit_quant_type='nf4'`` ...). The
            LLM is built float and only marked: the runner quantizes its linears after the
            weights load (:mod:`mmllava.models.qlora`).

    Returns:
        PreTrainedModel: The randomly initialized LM (weights come from ``pretrained``).
    """
    config = dict(config)
    if 'model_type' not in config:
        raise ValueError("The LLM config must name its 'model_type' (e.g. 'llama')")
    hf_config = AutoConfig.for_model(config.pop('model_type'), **config)
    kwargs = dict(attn_implementation=attn_implementation)
    if torch_dtype is not None:
        kwargs['dtype'] = torch_dtype
    model = AutoModelForCausalLM.from_config(hf_config, **kwargs)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=dict(use_reentrant=False))
    if quantization_config is not None:
        from .qlora import mark_for_quantization
        mark_for_quantization(model, quantization_config)
    return model
