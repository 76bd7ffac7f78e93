"""Per-GPU memory arithmetic: the activations a layer keeps, the model states a strategy keeps.

Pure arithmetic (no torch), so that the formulas can be read and tested on their own;
:mod:`mmllava.engine.memory_estimate` feeds them the counts of a config's model, built on the
meta device. ``docs/memory.md`` derives each term and checks the sums against measured peaks.

Activations count the tensors autograd saves, tensor by tensor, for one token:

* a LLaMA-style decoder layer (RMSNorm, rotary q/k/v/o attention through ``sdpa``'s flash or
  memory-efficient kernel, which keeps q, k, v, the output and a log-sum-exp but no L x L
  matrix, and a SiLU-gated MLP), and the same layer with LoRA adapters on its linears;
* under bf16 autocast with fp32 weights, every linear casts its input to a new bf16 copy (only
  leaf weights are cached), rotary embedding promotes q and k back to fp32, and the residual
  stream stays fp32;
* a frozen linear keeps nothing for its weight's gradient (autograd saves a matmul's input only
  when the weight needs a gradient).
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

GIB = 1024**3
# bytes per parameter of bitsandbytes' NF4 with blocks of 64: 4 bits + an absmax per block, fp32
# (0.0625 B) or, double quantized, int8 with an fp32 constant per 256 blocks.
NF4_BYTES = {True: 0.5 + 1 / 64 + 4 / (64 * 256), False: 0.5 + 4 / 64}
DTYPE_BYTES = {'float32': 4, 'bfloat16': 2, 'float16': 2, 'int8': 1, 'nf4': NF4_BYTES[True]}
# CUDA context, cuBLAS/cuDNN workspaces and the caching allocator's fragmentation, per GPU.
CUDA_ALLOWANCE_GIB = 1.5
FRAGMENTATION = 0.10  # of what the tensors need at their peak


@dataclass
class Precision:
    """How a training step computes: ``param`` bytes of weights, ``autocast`` to bf16 or not."""

    param: int = 4  # bytes of a weight as held by the module
    autocast: bool = False

    @property
    def act(self) -> int:
        """Bytes of a matmul output (what linears, attention and the MLP produce)."""
        return 2 if self.autocast else self.param

    @property
    def res(self) -> int:
        """Bytes of the residual stream (fp32 under autocast: fp32 embeddings + bf16 adds)."""
        return self.param


def _linear_inputs(groups, prec: Precision, base_trained: bool, lora: Optional[dict]) -> float:
    """Bytes a group of linears sharing one input keeps for backward, per token.

    Args:
        groups: ``(in_features, n_linears, input_bytes, lora_on)`` per shared input.
        prec: The precision.
        base_trained: Whether the base weights get gradients (so keep their inputs).
        lora: ``dict(r=..., dropout=...)`` or None.
    """
    total = 0.0
    for width, count, in_bytes, lora_on in groups:
        shared = False
        if base_trained:
            if prec.autocast and in_bytes != 2:
                total += 2 * width * count  # one bf16 copy per linear call
            else:
                shared = True
        if lora and lora_on:
            r = lora.get('r', 8)
            if lora.get('dropout', 0):
                total += count * width * 1  # dropout's bool mask
                total += count * width * (2 if prec.autocast else in_bytes)  # lora_A's input
            elif prec.autocast and in_bytes != 2:
                total += 2 * width * count
            else:
                shared = True
            total += count * r * prec.act  # lora_A's output, lora_B's input
        if shared:
            total += width * in_bytes
    return total


def decoder_layer_bytes(hidden: int, intermediate: int, heads: int, kv_heads: int,
                        prec: Precision, base_trained: bool = True,
                        lora: Optional[dict] = None, padded: bool = True) -> float:
    """Bytes one LLaMA/Mistral/Qwen2 decoder layer keeps for backward, per token.

    Args:
        hidden, intermediate, heads, kv_heads: The layer's shape.
        prec: The precision.
        base_trained: Whether the layer's own weights train (full finetune) or are frozen.
        lora: LoRA on every linear of the layer (``r``, ``dropout``), or None.
        padded: Whether batches carry padding: transformers then gives ``sdpa`` a mask and
            repeats grouped k/v heads to all heads (with no mask it passes ``enable_gqa``).
    """
    kv = hidden * kv_heads // heads
    kv_sdpa = hidden if (padded and kv_heads != heads) else kv
    norm_out = prec.res  # RMSNorm's output dtype (that of its weight)
    total = 0.0
    for _ in range(2):  # input_layernorm, post_attention_layernorm
        total += 4 * hidden  # the fp32 view of the input (pow and mul keep it)
        if base_trained:
            total += norm_out * hidden  # the normalized input, for the weight's gradient
    total += _linear_inputs([(hidden, 3, norm_out, True), (hidden, 1, prec.act, True),
                             (hidden, 2, norm_out, True), (intermediate, 1, prec.act, True)],
                            prec, base_trained, lora)
    # q and k after rotary embedding (cos/sin are in the residual dtype): sdpa keeps them
    rot = max(prec.act, prec.res)
    if prec.autocast:
        total += 2 * (hidden + 2 * kv_sdpa)  # sdpa casts q, k (fp32) and keeps v (bf16)
    else:
        total += rot * (hidden + kv_sdpa) + prec.act * kv_sdpa
    total += prec.act * hidden  # sdpa's output (its transposed contiguous copy: o_proj input)
    total += 4 * heads  # log-sum-exp
    total += 3 * prec.act * intermediate  # silu keeps gate, the product keeps silu(gate), up
    return total


def vision_layer_bytes(hidden: int, intermediate: int, heads: int, prec: Precision,
                       trained: bool) -> float:
    """Bytes a CLIP/SigLIP encoder layer keeps (trained) or needs at once (frozen), per token."""
    act = prec.act
    if not trained:  # no graph: the largest working set of one layer, nothing kept
        return act * max(5 * hidden, 2 * hidden + 3 * intermediate)
    return (2 * (prec.res + act) * hidden + 3 * act * hidden + 2 * act * hidden
            + 3 * act * intermediate + 4 * heads)


def projector_bytes(in_ch: int, out_ch: int, prec: Precision, trained: bool) -> float:
    """Bytes the mlp2x_gelu projector keeps for backward per visual token."""
    if not trained:
        return 0.0
    return 2 * in_ch + 2 * prec.act * out_ch  # fc1 input (bf16), gelu input, fc2 input


def logits_bytes(rows: int, positions: int, vocab: int, prec: Precision) -> Dict[str, float]:
    """The loss head's logits: kept (log-softmax output) and at the start of backward.

    ``positions`` are those the LM head runs on: the labelled ones for our loss
    (``logits_to_keep``), every position for transformers' own loss.
    """
    n = rows * positions * vocab
    upcast = 4 if prec.act != 4 else 0  # logits.float()
    return dict(forward=n * (prec.act + upcast + 4), kept=4 * n,
                backward=n * (4 + 4 + 4 + (prec.act if prec.act != 4 else 0)))


def kv_cache_bytes(layers: int, kv_dim: int, tokens: int, dtype_bytes: int) -> float:
    """Keys and values of ``tokens`` positions in all layers (``kv_dim``: kv heads x head dim)."""
    return 2 * layers * kv_dim * tokens * dtype_bytes


def backward_sweep(stages: Sequence[tuple]) -> float:
    """Peak of kept activations plus gradients as backward walks the stages in reverse.

    Args:
        stages: ``(activation_bytes, gradient_bytes)`` in forward order. Backward frees a
            stage's activations as it writes its weights' gradients (grads are set to None
            before each forward, as ``zero_grad`` does).

    Returns:
        float: The largest sum of activations still kept and gradients already written.
    """
    acts = [a for a, _ in stages]
    grads = [g for _, g in stages]
    peak = 0.0
    for j in range(len(stages), -1, -1):  # stages j.. have been through backward
        peak = max(peak, sum(acts[:j]) + sum(grads[j:]) + (grads[j - 1] if j else 0))
    return peak


# ---------------------------------------------------------------------- model states
STRATEGIES = ('single', 'ddp', 'fsdp_full', 'fsdp_grad_op', 'zero2', 'zero3')


def model_states(strategy: str, gpus: int, weights: float, trainable: int, frozen: int,
                 param_bytes: int, largest_unit: int, root_params: int, cuda: bool = True,
                 offload_optimizer: bool = False, offload_param: bool = False,
                 buckets: Optional[dict] = None) -> Dict[str, float]:
    """Weights, gradients and optimizer states per GPU (and in host memory, for offload).

    Args:
        strategy: One of ``STRATEGIES``.
        gpus: Data-parallel processes.
        weights: Bytes of all weights as the module holds them (QLoRA's 4-bit counted in).
        trainable, frozen: Parameter counts.
        param_bytes: Bytes of a trainable weight (its gradient and AdamW states have them).
        largest_unit: Parameters of the largest FSDP/ZeRO-3 unit (a decoder layer).
        root_params: FSDP: parameters outside every wrapped layer (embeddings, LM head,
            projector, norms), unsharded during forward and backward.
        cuda: AdamW's foreach step (the default on CUDA) holds one more copy of the states'
            size while it runs.
        offload_optimizer, offload_param: DeepSpeed's offload to CPU.
        buckets: DeepSpeed ``reduce_bucket_size`` / ``allgather_bucket_size`` (elements).

    Returns:
        dict: ``weights``, ``gradients``, ``optimizer``, ``step_temp``, ``buffers`` (bytes
        per GPU) and ``host`` (bytes of CPU memory per node, for offload).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f'strategy must be one of {STRATEGIES}, got {strategy!r}')
    n = max(1, gpus)
    buckets = buckets or {}
    out = dict(weights=0.0, gradients=0.0, optimizer=0.0, step_temp=0.0, buffers=0.0, host=0.0)
    states = 2 * param_bytes * trainable  # AdamW exp_avg + exp_avg_sq, in the weights' dtype
    if strategy in ('single', 'ddp'):
        out.update(weights=weights, gradients=param_bytes * trainable, optimizer=states)
        if strategy == 'ddp' and n > 1:  # the reducer's buckets: one more copy of the grads
            out['buffers'] = param_bytes * trainable
    elif strategy.startswith('fsdp'):
        # Flat fp32 (param_bytes) shards; bf16 unsharded copies while a unit computes.
        total = trainable + frozen
        out['weights'] = weights / n
        if strategy == 'fsdp_full':  # this unit + the prefetched one + the root
            out['buffers'] = 2 * (2 * largest_unit + root_params)
        else:  # SHARD_GRAD_OP keeps every unit unsharded from forward to backward
            out['buffers'] = 2 * total
        out['buffers'] += 2 * 2 * largest_unit  # a unit's unsharded bf16 grads + reduce copy
        out.update(gradients=param_bytes * trainable / n, optimizer=states / n)
    else:  # DeepSpeed bf16: the module in bf16, fp32 master weights with the optimizer
        total = trainable + frozen
        master = (4 + 4 + 4) * trainable / n  # fp32 weights, exp_avg, exp_avg_sq
        fp32_grads = 4 * trainable / n
        bucket = 2 * buckets.get('reduce_bucket_size', 5e8)
        if strategy == 'zero2':
            out['weights'] = 2 * total
            out['gradients'] = 2 * trainable  # bf16 grads written by backward, then reduced
            out['buffers'] = bucket + 2 * buckets.get('allgather_bucket_size', 5e8)
        else:
            out['weights'] = 0.0 if offload_param else 2 * total / n
            out['gradients'] = 2 * trainable / n
            out['buffers'] = 4 * largest_unit + bucket  # gathered bf16 params and grads
        if offload_optimizer:
            out['host'] = (master + fp32_grads) * n
            if offload_param:
                out['host'] += 2 * total
        else:
            out['optimizer'] = master
            out['gradients'] += fp32_grads
    if cuda and not out['host']:
        out['step_temp'] = out['optimizer'] / 2  # foreach sqrt(exp_avg_sq)
    return out


def verdict(total_bytes: float, gpu_gib: float) -> Dict[str, float]:
    """Whether ``total_bytes`` of tensors fit a GPU of ``gpu_gib`` GiB after the allowances."""
    need = total_bytes * (1 + FRAGMENTATION) / GIB + CUDA_ALLOWANCE_GIB
    return dict(need_gib=need, fits=need <= gpu_gib)
