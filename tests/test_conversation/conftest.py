"""Tokenizers shared by the conversation tests (built once per session, offline)."""
from pathlib import Path

import pytest

import mmllava  # noqa: F401  (applies the compat shims before mmpretrain is imported)
from mmllava.conversation import HFTokenizer, SentencePieceTokenizer

REPO = Path(__file__).resolve().parents[2]
TINY_TOKENIZER = REPO / 'resources' / 'tiny-tokenizer'

HF_CORPUS = [
    'A chat between a curious user and an artificial intelligence assistant.',
    'You are a helpful assistant. What is the man doing in the image?',
    'He is running in the park. The woman is dancing on a stage, 2 times!',
    'user assistant system: describe the video; answer with a single word.',
]


@pytest.fixture(scope='session')
def sp_tokenizer():
    """The shipped tiny LLaMA-like sentencepiece tokenizer."""
    return SentencePieceTokenizer(str(TINY_TOKENIZER))


@pytest.fixture(scope='session')
def hf_tokenizer(tmp_path_factory):
    """A tiny byte-level BPE (Qwen/GPT-2 style) saved as a local Hugging Face directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, show_progress=False,
        special_tokens=['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(HF_CORPUS * 3, trainer)
    out = tmp_path_factory.mktemp('hf_tokenizer')
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|im_end|>',
                            pad_token='<|endoftext|>').save_pretrained(str(out))
    return HFTokenizer(str(out))
