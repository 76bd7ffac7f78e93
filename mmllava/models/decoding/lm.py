"""Our forward over a transformers LLaMA / Mistral / Qwen2: a static KV cache, fused
projections, the LM head on the last position only.

transformers' decoder runs ~2,500 small ops a token through its module tree and grows a
``DynamicCache``; this forward reads the same weights (the modules' own parameters, the norms
and the rotary embedding called as they are, so every RoPE variant and epsilon is theirs) in
a short loop per layer. The q/k/v and gate/up projections are fused: one matrix per layer
whose slices become the modules' weights (:func:`fuse_projections`), so nothing is copied and
transformers' own forward, training and saving see the same tensors.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Int8Matrix, linear

SUPPORTED_MODEL_TYPES = ('llama', 'mistral', 'qwen2')


def unsupported_reason(llm: nn.Module) -> Optional[str]:
    """Why our forward cannot run ``llm`` (then transformers' ``generate`` does), or None."""
    config = getattr(llm, 'config', None)
    model_type = getattr(config, 'model_type', None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f'model_type {model_type!r} (ours: {", ".join(SUPPORTED_MODEL_TYPES)})'
    decoder = getattr(llm, 'model', None)
    if decoder is None or not hasattr(decoder, 'layers') or not hasattr(llm, 'lm_head'):
        return f'{type(llm).__name__} is not a plain *ForCausalLM (an adapter wrapper?)'
    for layer in decoder.layers:
        for proj in _projections(layer):
            if type(proj) is not nn.Linear:  # LoRA, int8 or 4-bit layers compute otherwise
                return f'{type(proj).__name__} projections (not nn.Linear)'
    if type(llm.lm_head) is not nn.Linear:
        return f'a {type(llm.lm_head).__name__} LM head'
    if getattr(config, 'mlp_bias', False):
        return 'MLP biases'
    if getattr(config, 'hidden_act', 'silu') not in ('silu', 'gelu', 'gelu_pytorch_tanh'):
        return f'hidden_act {config.hidden_act!r}'
    return None


def _projections(layer: nn.Module) -> List[nn.Module]:
    a, m = layer.self_attn, layer.mlp
    return [a.q_proj, a.k_proj, a.v_proj, a.o_proj, m.gate_proj, m.up_proj, m.down_proj]


def _fuse(modules: List[nn.Linear]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One matrix whose row slices become ``modules``' weights (and biases)."""
    weights = [m.weight for m in modules]
    fused = weights[0].new_empty((sum(w.shape[0] for w in weights), weights[0].shape[1]))
    bias = None
    if modules[0].bias is not None:
        bias = weights[0].new_empty(fused.shape[0])
    row = 0
    for m in modules:
        rows = m.weight.shape[0]
        fused[row:row + rows].copy_(m.weight.detach())
        m.weight.data = fused[row:row + rows]
        if bias is not None:
            bias[row:row + rows].copy_(m.bias.detach())
            m.bias.data = bias[row:row + rows]
        row += rows
    return fused, bias


def _still_fused(fused: torch.Tensor, modules: List[nn.Linear]) -> bool:
    """Whether ``modules``' weights are still the slices of ``fused`` (``.to()``, a loaded
    state dict assigned anew, or a module swap make new tensors)."""
    row = 0
    for m in modules:
        w = m.weight
        if (w.dtype != fused.dtype or w.device != fused.device
                or w.data_ptr() != fused[row].data_ptr()):
            return False
        row += w.shape[0]
    return row == fused.shape[0]


class _Layer:
    """One decoder layer's fused weights and the modules we call as they are."""

    def __init__(self, layer: nn.Module):
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv_modules = [attn.q_proj, attn.k_proj, attn.v_proj]
        self.gate_up_modules = [mlp.gate_proj, mlp.up_proj]
        self.qkv, self.qkv_bias = _fuse(self.qkv_modules)
        self.gate_up, _ = _fuse(self.gate_up_modules)
        self.o_proj, self.down_proj = attn.o_proj, mlp.down_proj
        self.input_norm = layer.input_layernorm.forward
        self.post_norm = layer.post_attention_layernorm.forward
        self.act = mlp.act_fn
        self.silu = type(mlp.act_fn) is nn.SiLU or type(mlp.act_fn).__name__ == 'SiLUActivation'
        self.q_size = attn.q_proj.weight.shape[0]
        self.kv_size = attn.k_proj.weight.shape[0]
        self.inter = mlp.gate_proj.weight.shape[0]
        self.scaling = attn.scaling
        self.sliding_window = getattr(attn, 'sliding_window', None)

    def valid(self) -> bool:
        return (_still_fused(self.qkv, self.qkv_modules)
                and _still_fused(self.gate_up, self.gate_up_modules))

    def matrices(self) -> Tuple[torch.Tensor, ...]:
        """qkv, o, gate_up and down, as the modules hold them now."""
        return self.qkv, self.o_proj.weight, self.gate_up, self.down_proj.weight

    def version(self) -> int:
        """Changes with every in-place update of the weights (an optimizer step)."""
        mods = self.qkv_modules + self.gate_up_modules + [self.o_proj, self.down_proj]
        return sum(m.weight._version for m in mods)


class StaticCache:
    """Keys and values of every layer, preallocated for the whole request.

    Args:
        layers (int): Decoder layers.
        batch (int): Rows.
        kv_heads (int): Key/value heads.
        length (int): Prompt length + new tokens: no step reallocates.
        head_dim (int): Per-head size.
        dtype, device: Of the LLM.
    """

    def __init__(self, layers: int, batch: int, kv_heads: int, length: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (batch, kv_heads, length, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.length = length

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


class FastLM:
    """Prefill and single-token steps of a LLaMA / Mistral / Qwen2 over its own weights.

    Built by :func:`fast_lm` (cached on the LLM); checks at every request that the weights
    are still the fused ones and refuses to run otherwise.
    """

    def __init__(self, llm: nn.Module):
        reason = unsupported_reason(llm)
        if reason is not None:
            raise ValueError(f'our decoder does not run {reason}')
        self.llm = llm
        config = llm.config
        decoder = llm.model
        self.embed = decoder.embed_tokens
        self.rotary = decoder.rotary_emb
        self.norm = decoder.norm.forward
        self.lm_head = llm.lm_head
        # Normal tensors even when first called under inference_mode: they become the
        # modules' weights, which a later training step must be able to use.
        with torch.inference_mode(False), torch.no_grad():
            self.layers = [_Layer(layer) for layer in decoder.layers]
        first = decoder.layers[0].self_attn
        self.head_dim = first.head_dim
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.groups = self.heads // self.kv_heads
        # Mistral reads its window from the config at each call; Qwen2's layers hold theirs.
        window = getattr(config, 'sliding_window', None) if config.model_type == 'mistral' \
            else None
        self.sliding_window = [layer.sliding_window or window for layer in self.layers]
        self._copies = {}  # decode dtype -> (version, per-layer matrices, head)

    def valid(self) -> bool:
        """Whether the LLM's weights are still the ones fused at build time."""
        return all(layer.valid() for layer in self.layers)

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def decode_matrices(self, dtype: Optional[torch.dtype]):
        """Per-layer (qkv, o, gate_up, down) and the head in ``dtype`` for single-token
        steps (copies, made once and remade after the weights change); None: the weights
        themselves. ``torch.int8``: :class:`~.linear.Int8Matrix` copies, the head float."""
        if dtype is None or dtype == self.dtype:
            return None
        if dtype == torch.int8 and self.lm_head.weight.device.type != 'cpu':
            raise ValueError("decode_dtype='int8' runs on CPUs (torch._int_mm needs more rows "
                             'than a decode step has on CUDA); use bfloat16 there')
        version = sum(layer.version() for layer in self.layers) + self.lm_head.weight._version
        cached = self._copies.get(dtype)
        if cached is None or cached[0] != version:
            with torch.no_grad():
                if dtype == torch.int8:  # the head stays float: it picks the greedy token
                    mats = [tuple(Int8Matrix(w) for w in layer.matrices())
                            for layer in self.layers]
                    cached = (version, mats, self.lm_head.weight)
                else:
                    mats = [tuple(w.to(dtype) for w in layer.matrices())
                            for layer in self.layers]
                    cached = (version, mats, self.lm_head.weight.to(dtype))
            self._copies = {dtype: cached}  # one copy set at a time
        return cached[1], cached[2]

    def new_cache(self, batch: int, length: int) -> StaticCache:
        """A cache for ``batch`` rows of up to ``length`` positions."""
        for window in self.sliding_window:
            if window is not None and length > window:
                raise ValueError(f'{length} positions exceed the sliding window ({window})')
        return StaticCache(len(self.layers), batch, self.kv_heads, length, self.head_dim,
                           self.dtype, self.lm_head.weight.device)

    def _step_attention(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                        mask: Optional[torch.Tensor], scale: float) -> torch.Tensor:
        """One query per row over the cache, as three small products: SDPA's CPU kernel
        costs ~200 us a call for a single query. Grouped heads share their K/V without a
        copy. Returns (B, H, 1, hd)."""
        b, kv, length, hd = keys.shape
        q = q.view(b, kv, self.groups, hd)
        scores = torch.matmul(q, keys.transpose(-1, -2)) * scale  # (B, kv, groups, T)
        if mask is not None:
            scores = scores.masked_fill(~mask.view(b, 1, 1, length), float('-inf'))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype)
        return torch.matmul(probs, values).view(b, self.heads, 1, hd)

    def _row_attention(self, layer: int, row: int, q, k, v, cache: StaticCache, slot: int,
                       scale: float) -> torch.Tensor:
        keys, values = cache.keys[layer], cache.values[layer]
        keys[:, :, slot] = k[row:row + 1, :, 0]
        values[:, :, slot] = v[row:row + 1, :, 0]
        return self._step_attention(q[row:row + 1], keys[:, :, :slot + 1],
                                    values[:, :, :slot + 1], None, scale)

    def _attention(self, i: int, layer: _Layer, x: torch.Tensor, w_qkv, w_o, cos, sin, cache,
                   start, end, mask, causal) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = linear(x, w_qkv, layer.qkv_bias).split(
            (layer.q_size, layer.kv_size, layer.kv_size), dim=-1)
        q = q.view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if isinstance(cache, list):  # rows of their own caches and lengths
            attn = torch.cat([self._row_attention(i, r, q, k, v, cache[r], start[r],
                                                  layer.scaling) for r in range(b)])
        else:
            keys, values = cache.keys[i], cache.values[i]
            keys[:, :, start:end] = k
            values[:, :, start:end] = v
            del k, v
            if n == 1:
                attn = self._step_attention(q, keys[:, :, :end], values[:, :, :end], mask,
                                            layer.scaling)
            else:
                attn = F.scaled_dot_product_attention(
                    q, keys[:, :, :end], values[:, :, :end], attn_mask=mask,
                    is_causal=causal and mask is None, scale=layer.scaling,
                    enable_gqa=self.groups > 1)
        del q
        return linear(attn.transpose(1, 2).reshape(b, n, layer.q_size), w_o, layer.o_proj.bias)

    def _mlp(self, layer: _Layer, x: torch.Tensor, w_gate_up, w_down) -> torch.Tensor:
        gate_up = linear(x, w_gate_up)
        del x
        gate, up = gate_up[..., :layer.inter], gate_up[..., layer.inter:]
        if layer.silu:  # in place in gate_up's storage: no (B, L, intermediate) temporaries
            act = F.silu(gate, inplace=True).mul_(up)
        else:
            act = layer.act(gate) * up
        del gate, up
        return linear(act, w_down)

    @torch.no_grad()
    def forward(self, hidden: torch.Tensor, positions: torch.Tensor, cache: StaticCache,
                start: int, mask: Optional[torch.Tensor], causal: bool,
                matrices=None) -> torch.Tensor:
        """Run ``hidden`` (B, L, D) at cache slots ``start:start+L``; logits of the last one.

        Args:
            hidden: Input embeddings (B, L, D).
            positions: Rotary positions (B, L).
            cache: Filled at slots ``start:start+L``; read at ``:start+L``. Or, for one
                step of rows that each have their own cache (continuous batching: rows
                joined at different times), a list of B one-row caches.
            start: First slot of this call, or the list of each row's slot.
            mask: Boolean (B, 1, L, start+L), True where a query may attend, or None.
            causal: No mask given and L > 1: SDPA's causal masking (cache empty before).
            matrices: :meth:`decode_matrices` to multiply with (activations, norms,
                attention and the cache stay in the LLM's dtype), or None.

        Returns:
            Tensor: (B, vocab) float32 logits of the last position.
        """
        b, n, _ = hidden.shape
        end = None if isinstance(cache, list) else start + n
        cos, sin = self.rotary(hidden, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        per_layer, head = matrices if matrices is not None else (None, self.lm_head.weight)
        for i, layer in enumerate(self.layers):
            w_qkv, w_o, w_gate_up, w_down = (layer.matrices() if per_layer is None
                                             else per_layer[i])
            # Blocks in functions of their own: their temporaries are freed on return, as
            # in transformers' modules (locals of this loop would live on through the MLP).
            hidden = hidden + self._attention(i, layer, layer.input_norm(hidden), w_qkv, w_o,
                                              cos, sin, cache, start, end, mask, causal)
            hidden = hidden + self._mlp(layer, layer.post_norm(hidden), w_gate_up, w_down)
        last = self.norm(hidden[:, -1:])
        if head is self.lm_head.weight and (self.lm_head._forward_hooks
                                            or self.lm_head._forward_pre_hooks):
            return self.lm_head(last)[:, 0].float()  # a user's hooks on the head still run
        return linear(last, head, self.lm_head.bias)[:, 0].float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def fast_lm(llm: nn.Module) -> FastLM:
    """The :class:`FastLM` of ``llm``, built once and rebuilt when its weights changed."""
    lm = getattr(llm, '_mmllava_fast_lm', None)
    if lm is None or not lm.valid():
        lm = FastLM(llm)
        object.__setattr__(llm, '_mmllava_fast_lm', lm)  # not a submodule: no state dict entry
    return lm


def bytes_per_token(llm: nn.Module) -> int:
    """Weight bytes one decode step reads: every decoder matrix and the LM head once (the
    embedding row lookup is negligible)."""
    total = sum(p.numel() * p.element_size() for p in llm.model.layers.parameters())
    total += llm.model.norm.weight.numel() * llm.model.norm.weight.element_size()
    head = llm.lm_head.weight
    return total + head.numel() * head.element_size()


__all__ = ['FastLM', 'StaticCache', 'SUPPORTED_MODEL_TYPES', 'bytes_per_token', 'fast_lm',
           'unsupported_reason']
