"""mmllava's own decode path (the default of ``LLaVA.generate``); transformers' ``generate``
stays for beam search and what this path does not implement."""
from .lm import FastLM, StaticCache, bytes_per_token, fast_lm, unsupported_reason
from .loop import SUPPORTED_KWARGS, decode, decode_dtype_of, logits_processors, unsupported_kwargs

__all__ = [
    'FastLM', 'SUPPORTED_KWARGS', 'StaticCache', 'bytes_per_token', 'decode', 'decode_dtype_of',
    'fast_lm', 'logits_processors', 'unsupported_kwargs', 'unsupported_reason'
]
