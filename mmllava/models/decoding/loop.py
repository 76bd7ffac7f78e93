"""Greedy and sampled generation over :class:`~.lm.FastLM`: prefill once, then one lean
step per token.

Semantics are transformers' ``generate`` with ``inputs_embeds`` (the ids it sees are the
generated ones only): the same logits processors (transformers' own classes, in its order),
``torch.multinomial`` on the same probabilities (same seed, same samples), finished rows
padded with ``pad_token_id``, the streamer's ``put``/``end`` calls and stopping criteria.
"""
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.generation.stopping_criteria import StoppingCriteriaList

from .linear import decode_threads
from .lm import FastLM

# The keywords this loop implements; any other (beam search, n-gram bans, output_scores ...)
# goes to transformers' generate.
SUPPORTED_KWARGS = frozenset({
    'max_new_tokens', 'do_sample', 'num_beams', 'temperature', 'top_k', 'top_p',
    'repetition_penalty', 'min_new_tokens', 'eos_token_id', 'pad_token_id', 'streamer',
    'stopping_criteria', 'stop_strings', 'tokenizer', 'use_cache', 'num_return_sequences',
    'generator', 'callback', 'decode_dtype', 'logits_processor'
})
DECODE_DTYPES = {'float32': None, 'fp32': None, 'bfloat16': torch.bfloat16,
                 'bf16': torch.bfloat16, 'float16': torch.float16, 'fp16': torch.float16,
                 'int8': torch.int8}


def decode_dtype_of(name) -> Optional[torch.dtype]:
    """``--decode-dtype`` / ``decode_dtype=``: None (the LLM's own) or a torch dtype."""
    if name is None or isinstance(name, torch.dtype):
        return name
    if name not in DECODE_DTYPES:
        raise ValueError(f'decode_dtype must be one of {", ".join(DECODE_DTYPES)}, not {name!r}')
    return DECODE_DTYPES[name]
# transformers' defaults for what a model's generation config leaves unset.
DEFAULTS = dict(do_sample=False, temperature=1.0, top_k=50, top_p=1.0, repetition_penalty=1.0,
                min_new_tokens=0, num_beams=1, num_return_sequences=1)


def unsupported_kwargs(kwargs: Dict) -> List[str]:
    """The keywords that need transformers' ``generate`` (beam search among them)."""
    names = [k for k in kwargs if k not in SUPPORTED_KWARGS and kwargs[k] is not None]
    if (kwargs.get('num_beams') or 1) > 1:
        names.append('num_beams')
    if (kwargs.get('num_return_sequences') or 1) > 1:
        names.append('num_return_sequences')
    if kwargs.get('use_cache') is False:
        names.append('use_cache')
    return names


def logits_processors(cfg: Dict, eos: Sequence[int], extra=None) -> LogitsProcessorList:
    """transformers' processors for ``cfg``, in ``generate``'s order: a user's ``extra`` list
    after the processors and before the sampling warpers."""
    procs = LogitsProcessorList()
    if cfg['repetition_penalty'] not in (None, 1.0):
        procs.append(RepetitionPenaltyLogitsProcessor(cfg['repetition_penalty']))
    if cfg['min_new_tokens'] and eos:
        procs.append(MinNewTokensLengthLogitsProcessor(0, cfg['min_new_tokens'], list(eos)))
    procs.extend(extra or [])
    if cfg['do_sample']:
        if cfg['temperature'] is not None and cfg['temperature'] != 1.0:
            procs.append(TemperatureLogitsWarper(cfg['temperature']))
        if cfg['top_k']:
            procs.append(TopKLogitsWarper(top_k=cfg['top_k']))
        if cfg['top_p'] is not None and cfg['top_p'] < 1.0:
            procs.append(TopPLogitsWarper(top_p=cfg['top_p']))
    return procs


def _as_list(ids: Union[None, int, Iterable[int]]) -> List[int]:
    if ids is None:
        return []
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]


def _prefill_mask(attention_mask: torch.Tensor) -> Optional[torch.Tensor]:
    """(B, 1, L, L) causal and key-padding mask; padded queries see themselves (a row with
    no key would give NaN, which the cache would carry to later layers)."""
    if bool(attention_mask.all()):
        return None
    n = attention_mask.shape[1]
    keep = attention_mask.bool()
    causal = torch.ones(n, n, dtype=torch.bool, device=keep.device).tril()
    mask = causal[None] & keep[:, None, :]
    mask |= torch.eye(n, dtype=torch.bool, device=keep.device)[None]
    return mask[:, None]


class _StopStrings:
    """Row stops once its text contains a stop string (checked over its last tokens)."""

    def __init__(self, stops: Sequence[str], tokenizer):
        if tokenizer is None:
            raise ValueError('stop_strings needs tokenizer= to decode the generated ids')
        self.stops = list(stops)
        self.tokenizer = tokenizer
        self.window = max(len(s) for s in self.stops) + 1

    def __call__(self, generated: torch.Tensor) -> torch.Tensor:
        done = []
        for row in generated[:, -self.window:].tolist():
            text = self.tokenizer.decode(row, skip_special_tokens=False)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=generated.device)


@torch.no_grad()
def decode(lm: FastLM, embeds: torch.Tensor, attention_mask: torch.Tensor,
           max_new_tokens: int, eos_token_id=None, pad_token_id: Optional[int] = None,
           streamer=None, stopping_criteria=None, stop_strings=None, tokenizer=None,
           generator: Optional[torch.Generator] = None,
           callback: Optional[Callable[[torch.Tensor], None]] = None,
           decode_dtype=None, logits_processor=None, **sampling) -> torch.Tensor:
    """Generate after left-padded prompt embeddings; the generated ids (B, T).

    Args:
        lm: The LLM's fast forward.
        embeds: (B, L, D) prompt embeddings (text and scattered visual features).
        attention_mask: (B, L), zeros on the left of shorter prompts.
        max_new_tokens: At most this many steps.
        eos_token_id: Stop token id(s); a row that emits one is done.
        pad_token_id: Fills done rows (default: the first stop token, as transformers).
        streamer: transformers streamer (``put`` each step's ids, ``end``).
        stopping_criteria: transformers ``StoppingCriteria`` list, called on the generated ids.
        stop_strings / tokenizer: Texts that end a row, decoded with ``tokenizer``.
        generator: Random generator for sampling (default: torch's global one, as
            transformers).
        callback: Called with each step's (B,) ids (a lighter streamer).
        decode_dtype: ``'bfloat16'`` or ``'int8'`` (or a dtype): the single-token steps
            multiply with copies of the decoder's matrices in it (int8: per-channel weights,
            per-token activations; the LM head stays float); the prefill, attention and cache
            stay in the LLM's dtype. None: the LLM's own weights.
        logits_processor: transformers processors run after the penalties and before the
            sampling warpers, where ``generate`` merges a user's list.
        **sampling: ``do_sample``, ``temperature``, ``top_k``, ``top_p``,
            ``repetition_penalty``, ``min_new_tokens`` (transformers' meanings and defaults).

    Returns:
        Tensor: (B, T) ids, T <= max_new_tokens; rows done early are padded.
    """
    cfg = {**DEFAULTS, **{k: v for k, v in sampling.items() if v is not None}}
    for key in ('num_beams', 'num_return_sequences', 'use_cache'):
        cfg.pop(key, None)
    eos = _as_list(eos_token_id)
    pad = eos[0] if pad_token_id is None and eos else pad_token_id
    procs = logits_processors(cfg, eos, logits_processor)
    if stopping_criteria is not None and not callable(stopping_criteria):
        stopping_criteria = StoppingCriteriaList(stopping_criteria)  # a plain list, as generate
    stops = _StopStrings(_as_list_str(stop_strings), tokenizer) if stop_strings else None
    b, n, _ = embeds.shape
    device = embeds.device
    if streamer is not None:
        streamer.put(torch.empty((b, 0), dtype=torch.long))
    out = torch.full((b, max(max_new_tokens, 0)), pad if pad is not None else 0,
                     dtype=torch.long, device=device)
    if max_new_tokens <= 0:
        if streamer is not None:
            streamer.end()
        return out
    attention_mask = attention_mask.to(device)
    cache = lm.new_cache(b, n + max_new_tokens)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    padded = not bool(attention_mask.all())
    matrices = lm.decode_matrices(decode_dtype_of(decode_dtype))
    logits = lm.forward(embeds.to(lm.dtype), positions, cache, 0, _prefill_mask(attention_mask),
                        causal=True)
    next_pos = positions[:, -1:] + 1
    key_mask = None
    if padded:
        key_mask = torch.ones(b, 1, 1, n + max_new_tokens, dtype=torch.bool, device=device)
        key_mask[:, 0, 0, :n] = attention_mask.bool()
    eos_t = torch.tensor(eos, dtype=torch.long, device=device) if eos else None
    unfinished = torch.ones(b, dtype=torch.bool, device=device)
    steps = 0
    with decode_threads():
        for t in range(max_new_tokens):
            scores = procs(out[:, :t], logits) if procs else logits
            if cfg['do_sample']:
                probs = torch.softmax(scores, dim=-1)
                token = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
            else:
                token = torch.argmax(scores, dim=-1)
            if eos_t is not None and pad is not None:  # as transformers: only with stop tokens
                token = torch.where(unfinished, token, torch.full_like(token, pad))
            out[:, t] = token
            steps = t + 1
            if streamer is not None:
                streamer.put(token.cpu())
            if callback is not None:
                callback(token)
            if eos_t is not None:
                unfinished &= ~torch.isin(token, eos_t)
            if stopping_criteria is not None:
                unfinished &= ~stopping_criteria(out[:, :steps], None)  # as generate
            if stops is not None:
                unfinished &= ~stops(out[:, :steps])
            if t + 1 == max_new_tokens or not bool(unfinished.any()):
                break
            hidden = lm.embed(token[:, None]).to(lm.dtype)
            mask = None if key_mask is None else key_mask[..., :n + t + 1]
            logits = lm.forward(hidden, next_pos, cache, n + t, mask, causal=False,
                                matrices=matrices)
            next_pos = next_pos + 1
    if streamer is not None:
        streamer.end()
    return out[:, :steps]


def _as_list_str(stops: Union[str, Sequence[str]]) -> List[str]:
    return [stops] if isinstance(stops, str) else list(stops)


__all__ = [
    'DEFAULTS', 'SUPPORTED_KWARGS', 'decode', 'decode_dtype_of', 'logits_processors',
    'unsupported_kwargs'
]
