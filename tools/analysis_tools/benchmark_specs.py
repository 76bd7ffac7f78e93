"""What ``benchmark.py`` measures: the sizes, the two frameworks' models, weights and inputs.

Each size is one LLaVA architecture built twice, once as transformers'
``LlavaForConditionalGeneration`` and once as mmllava's ``Llava``, so that both frameworks run
the same network on the same random weights and inputs. This module also holds the callables a
worker times for each framework (a ``generate`` and a training ``step``), because they encode
how the two frameworks differ in their inputs (the image placeholder id) rather than how they
are timed.

Keep this module free of mmllava imports at the top: the transformers worker imports it and
must not pay for them (imports show in its RSS).
"""
BOS, EOS, PAD = 1, 2, 0
PLACEHOLDER = -200  # mmllava's image placeholder; transformers uses an id inside the vocab.
PROMPT_TOKENS = 30
DECODE_TOKENS = 64
BATCH = 8
BATCH_TOKENS = 32
TRAIN_BATCH = 4
TRAIN_TEXT_TOKENS = 128
TRAIN_STEPS = 3
TRAIN_SIZES = ('tiny', 'small')
QUANT_VARIANTS = ('fp32', 'bf16', 'int8', 'decode-bf16', 'decode-int8')

_TEXT_COMMON = dict(max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                    tie_word_embeddings=False, bos_token_id=BOS, eos_token_id=EOS)
SIZES = {
    'tiny': dict(
        dtype='float32',
        vision=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                    num_attention_heads=4, image_size=56, patch_size=14,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=4, vocab_size=1000)),
    # CLIP ViT-B/16 at 224 + a 12-layer, 768-wide LLaMA.
    'small': dict(
        dtype='float32',
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, image_size=224, patch_size=16,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=12, num_key_value_heads=12, vocab_size=32000)),
    # CLIP ViT-L/14-336 + TinyLlama-1.1B's shape.
    '1b': dict(
        dtype='bfloat16',
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16, image_size=336, patch_size=14,
                    hidden_act='quick_gelu'),
        text=dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                  num_attention_heads=32, num_key_value_heads=4, vocab_size=32000)),
}
# (metric, unit, higher_is_better)
METRICS = [
    ('prefill_latency', 'ms', False),
    ('decode_throughput', 'tokens/s', True),
    ('batch8_throughput', 'samples/s', True),
    ('peak_memory', 'MiB', False),
    ('peak_memory_over_weights', 'MiB', False),
]
TRAIN_METRICS = [
    ('train_throughput', 'samples/s', True),
    ('train_peak_memory', 'MiB', False),
]
QUANT_METRICS = METRICS + [('model_memory', 'MiB', False)]
# Decode time per token over the memory-bandwidth floor (weight bytes one step reads / the
# read bandwidth measured in the same run); lower is better, 1.0 is the floor.
FLOOR_METRIC = ('decode_floor_ratio', 'x floor', False)
FRAMEWORKS = ('mmllava', 'transformers')


# ---------------------------------------------------------------------- models and weights
def _vision_cfg(size: str) -> dict:
    """The CLIP vision config of ``size`` (a copy: callers add fields to it)."""
    return dict(SIZES[size]['vision'])


def _text_cfg(size: str) -> dict:
    """The LLaMA config of ``size``: its shape on top of the fields every size shares."""
    return {**_TEXT_COMMON, **SIZES[size]['text']}


def _image_token_id(size: str) -> int:
    """transformers' image token id: the last id of the vocabulary.

    transformers embeds ``input_ids`` before it scatters the image features, so its
    placeholder must be a valid id (mmllava's ``PLACEHOLDER`` is negative).
    """
    return SIZES[size]['text']['vocab_size'] - 1


def build_transformers(size: str):
    """Build transformers' LLaVA of ``size``, uninitialized, in the size's dtype, sdpa attention.

    The weights are not initialized because they are loaded (or drawn) afterwards, and
    initializing a 1B model would take as long as the benchmark's runs.

    Args:
        size: A key of ``SIZES``.

    Returns:
        LlavaForConditionalGeneration: The model, in eval mode.
    """
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    from transformers.initialization import no_init_weights

    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**_vision_cfg(size)),
                      text_config=LlamaConfig(**_text_cfg(size)),
                      image_token_id=_image_token_id(size), projector_hidden_act='gelu',
                      vision_feature_layer=-2, vision_feature_select_strategy='default')
    with no_init_weights():
        model = LlavaForConditionalGeneration._from_config(
            cfg, attn_implementation='sdpa', dtype=getattr(torch, SIZES[size]['dtype']))
    return model.eval()


def build_mmllava(size: str, dtype: str = None):
    """Build mmllava's LLaVA with the same architecture as :func:`build_transformers`.

    Args:
        size: A key of ``SIZES``.
        dtype: The torch dtype's name; ``None`` for the size's.

    Returns:
        LLaVA: The model, uninitialized (the weights are loaded afterwards), in eval mode.
    """
    import torch
    from transformers.initialization import no_init_weights

    import mmllava.models  # noqa: F401  (registers the modules)
    from mmllava.registry import MODELS

    dtype = dtype or SIZES[size]['dtype']
    cfg = dict(
        type='Llava',
        vision_encoder=dict(type='HFCLIPVisionEncoder',
                            config=dict(_vision_cfg(size), attn_implementation='sdpa')),
        projector=dict(type='LlavaProjector', projector_type='mlp2x_gelu'),
        llm=dict(type='HFCausalLM', config=dict(model_type='llama', **_text_cfg(size)),
                 attn_implementation='sdpa', torch_dtype=dtype))
    with no_init_weights():
        model = MODELS.build(cfg)
    # Cast only the vision side: the LLM is built in its dtype as transformers builds it
    # (a blanket .to() would also cast the rotary inv_freq buffer and change numerics).
    model.vision_tower.to(getattr(torch, dtype))
    model.projector.to(getattr(torch, dtype))
    return model.eval()


def make_weights(size: str, path: str, seed: int = 0) -> None:
    """Write random weights of ``size`` in transformers' layout to a safetensors file.

    Both frameworks load this one file, so they run the same network. Linear and embedding
    weights are drawn from normal(0, 0.02); norms are at weight 1 and bias 0, so activations
    stay in range through every layer.

    Args:
        size: A key of ``SIZES``.
        path: The safetensors file to write.
        seed: The generator's seed.
    """
    import torch
    from safetensors.torch import save_file

    model = build_transformers(size)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'norm' in name:  # every LayerNorm / RMSNorm name holds 'norm' ('pre_layrnorm')
                param.fill_(1.0 if name.endswith('weight') else 0.0)
            else:
                param.normal_(0.0, 0.02, generator=gen)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


def load_model(framework: str, size: str, weights: str, variant: str = None):
    """Build a framework's model of ``size`` and load the weights of :func:`make_weights`.

    Args:
        framework: One of ``FRAMEWORKS``.
        size: A key of ``SIZES``.
        weights: The safetensors file (in transformers' layout; mmllava's side converts it).
        variant: For mmllava under ``--quant``, one of ``QUANT_VARIANTS``: the dtype to build
            in, and for ``int8`` the LLM's linear layers quantized after loading, as
            ``get_model(..., load_8bit=True)`` does.

    Returns:
        torch.nn.Module: The loaded model.
    """
    from safetensors.torch import load_file

    state = load_file(weights)
    if framework == 'transformers':
        model = build_transformers(size)
    else:
        dtype = {'fp32': 'float32', 'bf16': 'bfloat16', 'int8': 'float32',
                 'decode-bf16': 'float32', 'decode-int8': 'float32'}.get(variant)
        model = build_mmllava(size, dtype)
        from mmllava.convert import hf_to_mmllava
        state = hf_to_mmllava(state)  # the weights are saved from transformers' memory layout
    model.load_state_dict(state, strict=True)
    if variant == 'int8':
        from mmllava.models.quantize import quantize_llm_int8
        quantize_llm_int8(model)  # what get_model(..., load_8bit=True) does after loading
    if variant in ('decode-bf16', 'decode-int8'):  # fp32 prefill and vision, copies for steps
        model.generation_cfg['decode_dtype'] = {'decode-bf16': 'bfloat16',
                                                'decode-int8': 'int8'}[variant]
    return model


def llm_bytes_per_token(framework: str, model) -> int:
    """Weight bytes one decode step of ``model``'s LLM reads: its decoder layers, final norm
    and LM head (the embedding row lookup is negligible)."""
    if framework == 'mmllava':
        decoder, head = model.llm.model, model.llm.lm_head
    else:
        decoder, head = model.model.language_model, model.lm_head
    tensors = list(decoder.layers.parameters()) + [decoder.norm.weight, head.weight]
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------------- inputs
def make_inputs(size: str, seed: int = 0) -> dict:
    """Make the single prompt and the left-padded batch, with mmllava's placeholder id.

    Every prompt is ``BOS, text, <image> x N, text`` with ``PROMPT_TOKENS`` text tokens for the
    single prompt and 16..44 for the batch (so rows are padded differently and the batch
    exercises the attention mask).

    Args:
        size: A key of ``SIZES``.
        seed: The generator's seed (both workers draw the same inputs).

    Returns:
        dict: ``single``, ``single_mask`` and ``single_px`` (one prompt and its image);
        ``batch``, ``batch_mask`` and ``batch_px`` (``BATCH`` of them).
    """
    import torch

    vis, vocab = SIZES[size]['vision'], SIZES[size]['text']['vocab_size']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    gen = torch.Generator().manual_seed(seed)

    def prompt(num_text):
        text = torch.randint(3, vocab - 1, (num_text - 1, ), generator=gen).tolist()
        cut = len(text) // 4
        return [BOS] + text[:cut] + [PLACEHOLDER] * num_image + text[cut:]

    def images(n):
        return torch.randn(n, 3, vis['image_size'], vis['image_size'], generator=gen)

    single = torch.tensor([prompt(PROMPT_TOKENS)])
    rows = [prompt(PROMPT_TOKENS - 14 + 4 * i) for i in range(BATCH)]
    width = max(map(len, rows))
    batch = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return dict(single=single, single_mask=torch.ones_like(single), single_px=images(1),
                batch=batch, batch_mask=mask, batch_px=images(BATCH))


def make_train_inputs(size: str, seed: int = 1) -> dict:
    """Make a training batch: ``TRAIN_BATCH`` samples of one image and 128 text tokens each.

    Labels cover the text after the image (as an answer would); the image and the prompt
    before it are masked.

    Args:
        size: A key of ``SIZES``.
        seed: The generator's seed (both workers draw the same batch).

    Returns:
        dict: ``ids``, ``mask``, ``labels`` (``-100`` where masked) and ``px``.
    """
    import torch

    vis, vocab = SIZES[size]['vision'], SIZES[size]['text']['vocab_size']
    num_image = (vis['image_size'] // vis['patch_size'])**2
    gen = torch.Generator().manual_seed(seed)
    text = torch.randint(3, vocab - 1, (TRAIN_BATCH, TRAIN_TEXT_TOKENS - 1), generator=gen)
    cut = 16
    ids = torch.cat([torch.full((TRAIN_BATCH, 1), BOS), text[:, :cut],
                     torch.full((TRAIN_BATCH, num_image), PLACEHOLDER), text[:, cut:]], 1)
    labels = ids.clone()
    labels[:, :1 + cut + num_image] = -100
    px = torch.randn(TRAIN_BATCH, 3, vis['image_size'], vis['image_size'], generator=gen)
    return dict(ids=ids, mask=torch.ones_like(ids), labels=labels, px=px)


# ---------------------------------------------------------------------- workloads
def _generator(framework: str, model, size: str):
    """Wrap a framework's ``generate`` in one signature, so that one timed run serves both.

    Args:
        framework: One of ``FRAMEWORKS``.
        model: The framework's loaded model.
        size: A key of ``SIZES`` (for transformers' image token id).

    Returns:
        Callable: ``generate(ids, mask, px, **kw) -> new ids``, where ``ids`` hold mmllava's
        placeholder and only the generated ids are returned.
    """
    image_token = _image_token_id(size)

    def gen_mmllava(ids, mask, px, **kw):
        return model.generate(ids, attention_mask=mask, pixel_values=px, **kw)

    def gen_transformers(ids, mask, px, **kw):
        ids = ids.masked_fill(ids == PLACEHOLDER, image_token)
        return model.generate(input_ids=ids, attention_mask=mask, pixel_values=px,
                              **kw)[:, ids.shape[1]:]

    return gen_mmllava if framework == 'mmllava' else gen_transformers


def _trainer(framework: str, model, size: str):
    """Make a framework's training step: forward, backward and an AdamW step, vision frozen.

    The vision tower is frozen and the projector and LLM trained, as in LLaVA's finetune;
    transformers' side is a plain PyTorch loop, the baseline a user would write.

    Args:
        framework: One of ``FRAMEWORKS``.
        model: The framework's loaded model (set to train mode here).
        size: A key of ``SIZES`` (for transformers' image token id).

    Returns:
        Callable: ``step(batch) -> loss`` on a batch of :func:`make_train_inputs`; it raises
        ``FloatingPointError`` on a non-finite loss.
    """
    import torch

    vision = model.vision_tower if framework == 'mmllava' else model.model.vision_tower
    vision.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-5)
    image_token = _image_token_id(size)

    def loss_mmllava(b):
        return model(dict(input_ids=b['ids'], attention_mask=b['mask'], labels=b['labels'],
                          pixel_values=b['px']), mode='loss')['loss']

    def loss_transformers(b):
        ids = b['ids'].masked_fill(b['ids'] == PLACEHOLDER, image_token)
        return model(input_ids=ids, attention_mask=b['mask'], pixel_values=b['px'],
                     labels=b['labels']).loss

    compute = loss_mmllava if framework == 'mmllava' else loss_transformers

    def step(batch) -> float:
        optim.zero_grad(set_to_none=True)
        loss = compute(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f'{framework}: non-finite training loss {loss}')
        loss.backward()
        optim.step()
        return loss.item()

    return step
