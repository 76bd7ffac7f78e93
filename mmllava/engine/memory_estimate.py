"""Per-GPU memory of a training or test config, itemized, before anyone rents a GPU.

The model is built on the meta device (no weights, no memory), its parameters counted by part,
dtype and trainability; the config says the strategy (DDP, FSDP, DeepSpeed ZeRO), precision,
LoRA/QLoRA, gradient checkpointing, batch and sequence length. The arithmetic is
:mod:`mmllava.engine.memory_formulas`; ``docs/memory.md`` checks it against measured peaks and
``tools/analysis_tools/estimate_memory.py`` prints it.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .memory_formulas import (
    DTYPE_BYTES,
    GIB,
    NF4_BYTES,
    Precision,
    backward_sweep,
    decoder_layer_bytes,
    kv_cache_bytes,
    logits_bytes,
    model_states,
    projector_bytes,
    verdict,
    vision_layer_bytes,
)

_HEAD_ELEMENTS = 1 << 26  # mmllava.models.ranking's LM-head chunk


@dataclass
class ModelCounts:
    """What the estimate needs to know of a built model (its parameters and shapes)."""

    params: Dict[str, Dict[str, int]] = field(default_factory=dict)  # part -> total/trainable
    weight_bytes: float = 0.0
    trainable: int = 0
    frozen: int = 0
    param_bytes: int = 4  # of a trainable weight
    llm: dict = field(default_factory=dict)  # hidden, intermediate, layers, heads, kv, vocab
    vision: dict = field(default_factory=dict)  # hidden, intermediate, heads, layers, tokens
    proj_in: int = 0
    largest_unit: int = 0
    root_params: int = 0
    llm_trained: bool = False
    vision_trained: bool = False
    projector_trained: bool = False
    head_trained: bool = False
    lora: Optional[dict] = None
    quantized: int = 0  # LLM linear parameters held in NF4 (QLoRA)
    layer_grads: int = 0  # trainable parameters of one decoder layer
    other_grads: int = 0  # trainable parameters outside the decoder layers
    largest_param: int = 0  # the largest trainable tensor (a CPU AdamW step's temporary)
    linear_params: int = 0  # float nn.Linear weights on the gradient's path (LLM, projector)
    trainable_linear_params: int = 0  # those of them that train (autocast caches their casts)


def _bytes(dtype) -> int:
    return DTYPE_BYTES.get(str(dtype).replace('torch.', ''), 4)


def count_model(model, lora: Optional[dict] = None, quantization: Optional[dict] = None
                ) -> ModelCounts:
    """Count a built ``Llava``'s parameters (meta or real) by part, dtype and trainability.

    Args:
        model: The model.
        lora: Its ``lora`` config (rank and dropout), if any.
        quantization: Its LLM's ``quantization_config`` (QLoRA): the LLM's linear layers but
            ``lm_head`` then count at NF4's bytes, the LLM's other weights at fp32 (as peft's
            ``prepare_model_for_kbit_training`` leaves them).
    """
    from torch import nn
    c = ModelCounts(lora=dict(lora) if lora else None)
    parts = {'vision_tower': 'vision', 'projector': 'projector', 'image_newline': 'projector',
             'llm': 'llm'}
    quant_names = set()
    if quantization:
        skip = set(quantization.get('llm_int8_skip_modules') or ()) | {'lm_head'}
        for name, mod in model.llm.named_modules():
            if isinstance(mod, nn.Linear) and 'lora_' not in name and \
                    name.rsplit('.', 1)[-1] not in skip:
                quant_names.add(f'llm.{name}.weight')
                quant_names.add(f'llm.{name}.base_layer.weight')
        dq = quantization.get('bnb_4bit_use_double_quant', False)
    tb = set()
    for name, p in model.named_parameters():
        part = 'lora' if 'lora_' in name else parts.get(name.split('.', 1)[0], 'other')
        d = c.params.setdefault(part, dict(total=0, trainable=0))
        d['total'] += p.numel()
        if name in quant_names:
            c.weight_bytes += p.numel() * NF4_BYTES[dq]
            c.quantized += p.numel()
        elif quantization and part == 'llm':
            c.weight_bytes += 4 * p.numel()
        else:
            c.weight_bytes += p.numel() * _bytes(p.dtype)
        if p.requires_grad:
            d['trainable'] += p.numel()
            c.trainable += p.numel()
            tb.add(_bytes(p.dtype))
            c.largest_param = max(c.largest_param, p.numel())
            if '.layers.' not in name:
                c.other_grads += p.numel()
        else:
            c.frozen += p.numel()
    c.param_bytes = max(tb) if tb else 4
    for name, mod in model.named_modules():
        on_path = name.startswith('llm.') or (name.startswith('projector') and
                                              c.params.get('projector', {}).get('trainable'))
        if isinstance(mod, nn.Linear) and on_path and f'{name}.weight' not in quant_names:
            c.linear_params += mod.weight.numel()
            if mod.weight.requires_grad:
                c.trainable_linear_params += mod.weight.numel()
    llm = model.llm.get_base_model() if hasattr(model.llm, 'get_base_model') else model.llm
    cfg = llm.config
    heads = cfg.num_attention_heads
    c.llm = dict(hidden=cfg.hidden_size, intermediate=cfg.intermediate_size,
                 layers=cfg.num_hidden_layers, heads=heads,
                 kv=getattr(cfg, 'num_key_value_heads', None) or heads, vocab=cfg.vocab_size,
                 head_dim=getattr(cfg, 'head_dim', None) or cfg.hidden_size // heads)
    layers = llm.get_decoder().layers
    c.llm_trained = any(p.requires_grad for n, p in layers[0].named_parameters()
                        if 'lora_' not in n)
    c.layer_grads = sum(p.numel() for p in layers[0].parameters() if p.requires_grad)
    head = llm.get_output_embeddings()
    c.head_trained = any(p.requires_grad for p in head.parameters())
    vt = model.vision_tower
    vcfg = getattr(vt, 'config', None)
    if vcfg is not None:
        tokens = (vcfg.image_size // vcfg.patch_size)**2 + (1 if 'CLIP' in type(vt).__name__
                                                             else 0)
        c.vision = dict(hidden=vcfg.hidden_size, intermediate=vcfg.intermediate_size,
                        heads=vcfg.num_attention_heads, tokens=tokens,
                        layers=getattr(vt, 'num_run_layers', vcfg.num_hidden_layers))
    c.proj_in = getattr(vt, 'hidden_size', c.vision.get('hidden', 0))
    c.vision_trained = any(p.requires_grad for p in vt.parameters())
    c.projector_trained = any(p.requires_grad for p in model.projector.parameters())
    units = [m for m in model.modules()
             if type(m).__name__.endswith(('DecoderLayer', 'EncoderLayer'))]
    sizes = [sum(p.numel() for p in m.parameters()) for m in units]
    c.largest_unit = max(sizes, default=0)
    c.root_params = c.trainable + c.frozen - sum(sizes)
    return c


@dataclass
class Workload:
    """One step's shape: ``batch`` rows of ``seq_len`` tokens, ``labelled`` of them in the loss
    (union over the rows), ``images`` through the vision tower per row, ``visual_tokens``
    placeholders per row; ``padded`` batches give sdpa a mask."""

    batch: int
    seq_len: int
    labelled: int
    images: int = 1
    visual_tokens: int = 576
    padded: bool = True


def _prec_of(kind: str) -> Precision:
    return {'fp32': Precision(4, False), 'bf16': Precision(2, False),
            'autocast': Precision(4, True)}[kind]


def training_estimate(c: ModelCounts, w: Workload, precision: str = 'fp32',
                      checkpointing: bool = False, strategy: str = 'single', gpus: int = 1,
                      cuda: bool = True, offload_optimizer: bool = False,
                      offload_param: bool = False, buckets: Optional[dict] = None,
                      full_logits: bool = False) -> dict:
    """Peak bytes per GPU of a training step, itemized.

    Args:
        c: The model's counts.
        w: The step's shape.
        precision: Of the compute: ``'fp32'``, ``'bf16'`` (weights in bf16: FSDP's mixed
            precision, DeepSpeed's bf16) or ``'autocast'`` (fp32 weights, bf16 autocast).
        checkpointing: The LLM's gradient checkpointing (non-reentrant).
        strategy, gpus, cuda, offload_optimizer, offload_param, buckets: See
            :func:`~mmllava.engine.memory_formulas.model_states`.
        full_logits: The LM head on every position (transformers' loss) instead of the
            labelled ones only (``Llava.loss``).

    Returns:
        dict: ``items`` (name -> bytes), ``activations`` (name -> bytes), ``peak`` (bytes per
        GPU) and ``host`` (CPU bytes per node, for offload).
    """
    prec = _prec_of(precision)
    L = c.llm
    tokens = w.batch * w.seq_len
    states = model_states(strategy, gpus, c.weight_bytes, c.trainable, c.frozen,
                          c.param_bytes, c.largest_unit, c.root_params, cuda=cuda,
                          offload_optimizer=offload_optimizer, offload_param=offload_param,
                          buckets=buckets)
    if not cuda:  # torch's single-tensor AdamW: one temporary of the largest tensor
        states['step_temp'] = c.param_bytes * c.largest_param
    layer = decoder_layer_bytes(L['hidden'], L['intermediate'], L['heads'], L['kv'], prec,
                                base_trained=c.llm_trained, lora=c.lora, padded=w.padded)
    per_layer = tokens * layer
    kept_layer = tokens * L['hidden'] * prec.res if checkpointing else per_layer
    positions = w.seq_len if full_logits else w.labelled
    lg = logits_bytes(w.batch, positions, L['vocab'], prec)
    head_in = w.batch * positions * L['hidden'] * (2 if prec.autocast else prec.res)
    final_norm = tokens * L['hidden'] * (4 + (prec.res if c.head_trained else 0))
    vis_tokens = w.batch * w.images * c.vision.get('tokens', 0)
    acts = {}
    if c.vision:
        vis_layer = vision_layer_bytes(c.vision['hidden'], c.vision['intermediate'],
                                       c.vision['heads'], prec, c.vision_trained)
        acts['vision (kept)' if c.vision_trained else 'vision (one layer, no graph)'] = \
            vis_tokens * vis_layer * (c.vision['layers'] if c.vision_trained else 1)
    acts['projector'] = w.batch * w.visual_tokens * projector_bytes(
        c.proj_in, L['hidden'], prec, c.projector_trained)
    acts['embeddings + masks'] = tokens * L['hidden'] * prec.res + w.batch * w.seq_len**2 * \
        (1 if w.padded else 0) + 2 * tokens * L['head_dim'] * 4
    acts[f"decoder x {L['layers']}" + (' (checkpoints)' if checkpointing else '')] = \
        kept_layer * L['layers']
    acts['final norm + head input'] = final_norm + head_in
    if prec.autocast and not checkpointing:  # bf16 casts of the weights, kept for backward
        acts['autocast bf16 weight copies'] = 2 * c.linear_params
    acts['logits (log-softmax kept)'] = lg['kept']
    # Backward: stages in forward order, each freeing its activations as its grads appear.
    g_total = states['gradients']
    per_param = g_total / c.trainable if c.trainable else 0.0
    layer_g = c.layer_grads * per_param
    other_g = max(g_total - layer_g * L['layers'], 0.0)
    pre = sum(v for k, v in acts.items() if k.startswith(('vision (kept)', 'projector',
                                                          'embeddings', 'autocast')))
    stages = [(pre, other_g / 2)] + [(kept_layer, layer_g)] * L['layers'] + \
        [(acts['final norm + head input'] + lg['kept'], other_g / 2)]
    sweep = backward_sweep(stages)
    # Working sets on top: the logits' backward, or (checkpointed: one layer's recompute and)
    # the gradients of the MLP's three intermediate-wide tensors, the widest of a layer.
    mlp_grads = tokens * 3 * L['intermediate'] * prec.act
    work = max(lg['backward'] - lg['kept'], (per_layer if checkpointing else 0) + mlp_grads)
    forward_peak = sum(v for k, v in acts.items() if 'no graph' not in k) + lg['forward'] - \
        lg['kept']
    if prec.autocast and checkpointing:  # autocast's cache of trainable weights' casts
        forward_peak += 2 * c.trainable_linear_params
    vision_peak = acts.get('vision (one layer, no graph)', 0.0)
    step_peak = g_total + states['step_temp']
    phases = {'backward: activations + working set': (sweep + work, True),
              'forward: activations + logits': (forward_peak, False),
              'vision forward (no graph)': (vision_peak, False),
              'optimizer step: temporaries': (step_peak, True)}
    phase = max(phases, key=lambda k: phases[k][0])
    dynamic, with_grads = phases[phase]
    items = dict(weights=states['weights'], optimizer=states['optimizer'],
                 buffers=states['buffers'], gradients=g_total if with_grads else 0.0)
    items[f'{phase} (the peak)'] = dynamic - items['gradients']
    peak = sum(items.values())
    return dict(items=items, activations=acts, peak=peak, host=states['host'], phase=phase,
                per_layer=per_layer, logits=lg)


def eval_estimate(c: ModelCounts, batch: int, prompt: int, new_tokens: int = 0,
                  candidates: Optional[List[int]] = None, images: int = 1,
                  act_bytes: Optional[int] = None, group_size: int = 256) -> dict:
    """Peak bytes of generation (``new_tokens``) or closed-set ranking (``candidates``).

    Args:
        c: The model's counts (weights as held in memory).
        batch: Prompts at once.
        prompt: Tokens of a prompt (visual tokens included).
        new_tokens: Generated tokens.
        candidates: Token counts of the candidate answers (ranking), else None.
        images: Images (frames) through the vision tower per prompt.
        act_bytes: Bytes of an activation (the weights' dtype when None).
        group_size: Candidates per pass (``Llava.class_chunk_size``).
    """
    L = c.llm
    b = act_bytes or c.param_bytes
    kv_dim = L['kv'] * L['head_dim']
    h, i = L['hidden'], L['intermediate']
    items = dict(weights=c.weight_bytes)
    vis = 0.0
    if c.vision:
        vis = batch * images * c.vision['tokens'] * (
            vision_layer_bytes(c.vision['hidden'], c.vision['intermediate'], c.vision['heads'],
                               Precision(b, False), False) + 2 * c.vision['hidden'] * b)
    embeds = batch * prompt * h * b
    layer_work = batch * prompt * b * max(4 * h + 2 * kv_dim, 2 * h + 3 * i)
    if candidates is None:
        total = prompt + new_tokens
        cache = kv_cache_bytes(L['layers'], kv_dim, batch * total, b)
        grow = kv_cache_bytes(1, kv_dim, batch * total, b)  # torch.cat's new tensor
        logits = batch * L['vocab'] * (b + (4 if b != 4 else 0) + 4)
        prefill = kv_cache_bytes(L['layers'], kv_dim, batch * prompt, b) + \
            max(layer_work, vis) + logits
        decode = cache + grow + logits
        items.update({'KV cache (prompt + new)': cache, 'embeddings': embeds,
                      'prefill or decode working set': max(prefill, decode) - cache})
    else:
        sizes = list(candidates)
        fed = max(sum(max(n - 1, 0) for n in sizes[lo:lo + group_size])
                  for lo in range(0, len(sizes), group_size))
        cache = kv_cache_bytes(L['layers'], kv_dim, batch * prompt, b)
        ext = kv_cache_bytes(L['layers'], kv_dim, batch * fed, b) + \
            kv_cache_bytes(1, kv_dim, batch * (prompt + fed), b)
        mask = batch * fed * (prompt + fed) * b
        chunk = min(_HEAD_ELEMENTS, batch * fed * L['vocab'])
        head = chunk * (b + (4 if b != 4 else 0) + 4)  # logits, .float(), logsumexp's exp
        decoder = mask + batch * fed * b * max(4 * h + 2 * kv_dim, 2 * h + 3 * i)
        cand_work = ext + max(decoder, batch * fed * h * b + head)
        items.update({'KV cache (prompt)': cache, 'embeddings': embeds,
                      'candidate pass (cache, mask, chunked logits)':
                      max(cand_work, layer_work, vis)})
    return dict(items=items, peak=sum(items.values()))


def to_gib(x: float) -> float:
    """Bytes in GiB."""
    return x / GIB


__all__ = ['ModelCounts', 'Workload', 'count_model', 'training_estimate', 'eval_estimate',
           'verdict', 'to_gib']
