"""Closed-set ranking: the likelihood of every candidate answer after a prompt, in one pass.

The prompt runs once and keeps its KV cache. All candidates then go through the LLM together
as ONE sequence per prompt, appended after it: candidate ``c`` with ids ``t_1 .. t_n`` feeds
``t_1 .. t_{n-1}`` (``t_1``'s probability comes from the prompt's last position). A block
attention mask lets each fed token see the prompt (its real tokens) and the earlier tokens of
its own candidate only, and positions restart at the prompt's end for each candidate, so every
candidate is scored exactly as if it alone followed the prompt.

Memory: the prompt's cache once plus the candidates' tokens. The earlier design repeated the
prompt's cache once per candidate (``batch_repeat_interleave``): at 7B in fp16 a 1,900-token
prompt holds 0.95 GiB of cache, so 64 candidates at a time cost ~60 GiB per prompt.
``docs/ranking.md`` has the formula and the measurements.
"""
from typing import List, Sequence

import torch
from torch import nn

RANKINGS = ('sum', 'mean')
# Logit elements (batch x positions x vocab) computed per LM-head call: bounds the memory of
# the candidates' logits (64 Mi floats = 256 MiB in fp32).
_HEAD_ELEMENTS = 1 << 26


def _base_llm(llm: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (LoRA layers live inside it)."""
    return llm.get_base_model() if hasattr(llm, 'get_base_model') else llm


def candidate_groups(candidates: Sequence[Sequence[int]], group_size: int) -> List[range]:
    """Index ranges of the candidates scored per pass (``group_size`` candidates each)."""
    size = max(1, int(group_size))
    return [range(lo, min(lo + size, len(candidates))) for lo in range(0, len(candidates), size)]


def block_mask(prompt_mask: torch.Tensor, segment: torch.Tensor,
               dtype: torch.dtype) -> torch.Tensor:
    """The additive 4-D attention mask of the candidates' pass.

    Args:
        prompt_mask (Tensor): (B, L), 1 on the prompts' real tokens (0 on left padding).
        segment (Tensor): (S,), the candidate each fed token belongs to (non-decreasing).
        dtype: The LLM's dtype.

    Returns:
        Tensor: (B, 1, S, L + S): 0 where a fed token may attend (the prompt's real tokens,
        itself and the earlier tokens of its own candidate), the dtype's minimum elsewhere.
    """
    s = segment.shape[0]
    order = torch.arange(s, device=segment.device)
    own = (segment[:, None] == segment[None, :]) & (order[None, :] <= order[:, None])  # (S, S)
    allowed = torch.cat([prompt_mask.bool()[:, None, :].expand(-1, s, -1),
                         own[None].expand(prompt_mask.shape[0], -1, -1)], dim=-1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=segment.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


@torch.no_grad()
def score_candidates(llm: nn.Module, embeds: torch.Tensor, attention_mask: torch.Tensor,
                     candidates: Sequence[Sequence[int]], ranking: str = 'sum',
                     group_size: int = 256) -> torch.Tensor:
    """Log-likelihood of each candidate answer after each prompt.

    Args:
        llm (nn.Module): A transformers causal LM (or a peft model around one) whose
            attention takes a 4-D mask (``sdpa`` or ``eager``).
        embeds (Tensor): (B, L, hidden), the prompts' input embeddings, left padded.
        attention_mask (Tensor): (B, L), 0 on the left padding.
        candidates: C id sequences, each ending with the token that ends an answer.
        ranking (str): ``'sum'``: the candidate's summed log-probability; ``'mean'``: per token.
        group_size (int): Candidates per pass over the prompt's cache. A class's score does
            not depend on it (nor on the other candidates).

    Returns:
        Tensor: (B, C) float32 scores.
    """
    if ranking not in RANKINGS:
        raise ValueError(f'ranking must be one of {RANKINGS}, got {ranking!r}')
    if not candidates or any(len(c) == 0 for c in candidates):
        raise ValueError('Every candidate answer needs at least one token')
    base = _base_llm(llm)
    attn = getattr(base.config, '_attn_implementation', 'sdpa')
    if attn not in ('sdpa', 'eager'):
        raise ValueError(f'Closed-set ranking needs an LLM attention that takes a 4-D mask '
                         f"('sdpa' or 'eager'), got {attn!r}: build the LLM with "
                         "attn_implementation='sdpa'")
    device = embeds.device
    batch, length = attention_mask.shape
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = llm(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions,
              use_cache=True, logits_to_keep=1)
    first = out.logits[:, -1].float().log_softmax(-1)  # (B, V): each candidate's first id
    cache = out.past_key_values
    start = attention_mask.long().sum(-1)  # where the candidates start, per prompt
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    scores = torch.empty(batch, len(candidates), dtype=torch.float32, device=device)
    for group in candidate_groups(candidates, group_size):
        cands = [list(candidates[i]) for i in group]
        score = first[:, torch.as_tensor([c[0] for c in cands], device=device)]
        fed = [c[:-1] for c in cands]
        if any(fed):
            score = score + _continuations(decoder, head, cache, attention_mask, start, fed,
                                           [c[1:] for c in cands], embeds.dtype)
            cache.crop(length - cache.get_seq_length())  # the prompt alone again
        scores[:, group.start:group.stop] = score
    if ranking == 'mean':
        scores /= torch.tensor([len(c) for c in candidates], dtype=torch.float32, device=device)
    return scores


def _continuations(decoder, head, cache, prompt_mask, start, fed, targets,
                   dtype) -> torch.Tensor:
    """Summed log-probabilities of each candidate's ids after its first: (B, len(fed))."""
    device = prompt_mask.device
    batch = prompt_mask.shape[0]
    ids = torch.as_tensor([t for f in fed for t in f], device=device)
    segment = torch.as_tensor([j for j, f in enumerate(fed) for _ in f], device=device)
    offset = torch.as_tensor([k for f in fed for k in range(len(f))], device=device)
    target = torch.as_tensor([t for tg in targets for t in tg], device=device)
    hidden = decoder(input_ids=ids[None].expand(batch, -1),
                     attention_mask=block_mask(prompt_mask, segment, dtype),
                     position_ids=start[:, None] + offset[None], past_key_values=cache,
                     use_cache=True).last_hidden_state  # (B, S, hidden)
    vocab = head.weight.shape[0]
    step = max(1, _HEAD_ELEMENTS // max(1, batch * vocab))
    picked = []
    for lo in range(0, ids.shape[0], step):
        logits = head(hidden[:, lo:lo + step]).float()
        tgt = target[lo:lo + step][None, :, None].expand(batch, -1, 1)
        picked.append(logits.gather(-1, tgt)[..., 0] - logits.logsumexp(-1))
    per_token = torch.cat(picked, 1)  # (B, S)
    sums = torch.zeros(batch, len(fed), dtype=torch.float32, device=device)
    return sums.index_add_(1, segment, per_token)

