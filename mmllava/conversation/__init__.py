"""Chat templates, tokenizers and per-turn tokenization of conversations."""
from .json_tokenizer import JSONTokenizer
from .templates import (
    BUILTIN_TEMPLATES,
    VISUAL_PLACEHOLDERS,
    ConversationTemplate,
    Segment,
    get_template,
)
from .tokenization import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    answer_token_ids,
    build_prompt,
    from_llava_conversations,
    render_conversation,
    stop_token_ids,
    tokenize_conversation,
)
from .tokenizer import (
    HFTokenizer,
    SentencePieceTokenizer,
    build_tokenizer,
    tokenizer_file,
    train_sentencepiece,
)

__all__ = [
    'BUILTIN_TEMPLATES', 'ConversationTemplate', 'HFTokenizer', 'IGNORE_INDEX',
    'IMAGE_TOKEN_INDEX', 'JSONTokenizer', 'Segment', 'SentencePieceTokenizer',
    'VISUAL_PLACEHOLDERS', 'answer_token_ids', 'build_prompt', 'build_tokenizer',
    'from_llava_conversations', 'get_template', 'render_conversation', 'stop_token_ids',
    'tokenize_conversation', 'tokenizer_file', 'train_sentencepiece'
]
