"""Sentencepiece and Hugging Face tokenizers, training and the shipped tiny tokenizer."""
import hashlib
import importlib.util
import pickle
from pathlib import Path

import pytest

from mmllava.conversation import (
    HFTokenizer,
    SentencePieceTokenizer,
    build_tokenizer,
    train_sentencepiece,
)
from mmllava.registry import TOKENIZERS

REPO = Path(__file__).resolve().parents[2]
TINY_TOKENIZER = REPO / 'resources' / 'tiny-tokenizer'


def test_sentencepiece_basics(sp_tokenizer):
    tok = sp_tokenizer
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.vocab_size == 1000
    assert tok.dummy_prefix
    ids = tok.encode('A man is running.')
    assert tok.id_to_token(ids[0]) == '▁A'  # the dummy prefix
    assert tok.decode(ids) == 'A man is running.'
    # Legacy LLaMA: a chunk that starts with a newline gets "▁" then the newline byte.
    assert [tok.id_to_token(i) for i in tok.encode('\nWhat')[:2]] == ['▁', '<0x0A>']
    assert tok.encode('') == []
    assert tok.token_to_id('</s>') == 2 and tok.token_to_id('<|im_end|>') == 4
    with pytest.raises(KeyError, match='not in'):
        tok.token_to_id('<image>')


def test_sentencepiece_without_dummy_prefix(sp_tokenizer):
    with_prefix = sp_tokenizer.encode('A man.')
    without = sp_tokenizer.encode('A man.', add_dummy_prefix=False)
    assert sp_tokenizer.id_to_token(without[0]) == 'A'
    assert with_prefix[1:] == without[1:]


def test_sentencepiece_decode_skips_what_is_not_text(sp_tokenizer):
    tok = sp_tokenizer
    ids = tok.encode('A dog.')
    # BOS, EOS, pad/unk, the image placeholder and llava-hf's <image>/<pad> ids.
    noisy = [1, -200, *ids, 32000, 32001, 2, 0, 0]
    assert tok.decode(noisy) == 'A dog.'
    assert tok.decode([1, *ids, 2], skip_special_tokens=False) == '<s>A dog.</s>'
    with pytest.raises(ValueError, match='outside'):
        tok.decode([32000], skip_special_tokens=False)


def test_sentencepiece_file_or_dir_and_pickle(sp_tokenizer):
    tok = SentencePieceTokenizer(str(TINY_TOKENIZER / 'tokenizer.model'), pad_token_id=2)
    assert tok.pad_token_id == 2
    assert tok.encode('hello world') == sp_tokenizer.encode('hello world')
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode('hello world', add_dummy_prefix=False) == tok.encode(
        'hello world', add_dummy_prefix=False)
    assert clone.pad_token_id == 2
    with pytest.raises(FileNotFoundError):
        SentencePieceTokenizer(str(REPO / 'no-such-dir'))


def test_build_tokenizer(sp_tokenizer):
    assert build_tokenizer(sp_tokenizer) is sp_tokenizer
    assert isinstance(build_tokenizer(str(TINY_TOKENIZER)), SentencePieceTokenizer)
    tok = build_tokenizer(dict(type='SentencePieceTokenizer',
                               model_file=str(TINY_TOKENIZER / 'tokenizer.model')))
    assert tok.vocab_size == 1000
    assert 'SentencePieceTokenizer' in TOKENIZERS.module_dict
    assert 'HFTokenizer' in TOKENIZERS.module_dict
    with pytest.raises(ValueError, match='type'):
        build_tokenizer(dict(model_file='x'))
    with pytest.raises(ValueError, match='No tokenizer'):
        build_tokenizer(None)
    with pytest.raises(TypeError, match='not a tokenizer'):
        build_tokenizer(42)


def test_hf_tokenizer(hf_tokenizer):
    tok = hf_tokenizer
    assert tok.bos_token_id is None and tok.eos_token_id == tok.token_to_id('<|im_end|>')
    assert tok.pad_token_id == tok.token_to_id('<|endoftext|>')
    assert not tok.dummy_prefix
    ids = tok.encode('He is running.')
    assert tok.decode(ids) == 'He is running.'
    assert tok.decode([-200, *ids, tok.eos_token_id, 10 ** 6]) == 'He is running.'
    with pytest.raises(KeyError):
        tok.token_to_id('<|not_a_token|>')
    assert pickle.loads(pickle.dumps(tok)).encode('He is running.') == ids


def test_hf_tokenizer_needs_a_local_dir():
    with pytest.raises(FileNotFoundError, match='local tokenizer directory'):
        HFTokenizer('Qwen/Qwen2-7B-Instruct')


def test_train_sentencepiece_is_deterministic(tmp_path):
    texts = [f'the {w} number {i} jumps over the fence.' for i in range(60)
             for w in ('dog', 'cat', 'man')]
    a = train_sentencepiece(texts, str(tmp_path / 'a'), vocab_size=320)
    b = train_sentencepiece(texts, str(tmp_path / 'b'), vocab_size=320)
    assert open(a, 'rb').read() == open(b, 'rb').read()
    tok = SentencePieceTokenizer(str(tmp_path / 'a'))
    assert tok.vocab_size == 320 and (tok.bos_token_id, tok.eos_token_id) == (1, 2)
    assert tok.id_to_token(0) == '<unk>'
    # Byte fallback: text never seen still encodes and decodes losslessly.
    assert tok.decode(tok.encode('Zürich 42 ☃')) == 'Zürich 42 ☃'
    # Digits are split one by one.
    assert [tok.id_to_token(i) for i in tok.encode('123')][-3:] == ['1', '2', '3']
    with pytest.raises(ValueError, match='needs some text'):
        train_sentencepiece(['', ' '], str(tmp_path / 'c'), vocab_size=300)


def test_shipped_tiny_tokenizer_is_reproducible(tmp_path):
    """The README's command makes exactly the shipped file."""
    shipped = TINY_TOKENIZER / 'tokenizer.model'
    assert shipped.stat().st_size < 100 * 1024
    spec = importlib.util.spec_from_file_location(
        'train_tokenizer', REPO / 'tools' / 'misc' / 'train_tokenizer.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    path = train_sentencepiece(tool.builtin_corpus(), str(tmp_path), 1000,
                               user_defined_symbols=['<|im_start|>', '<|im_end|>'])
    made = hashlib.md5(open(path, 'rb').read()).hexdigest()
    assert made == hashlib.md5(shipped.read_bytes()).hexdigest()
    assert made in (TINY_TOKENIZER / 'README.md').read_text()


def test_mocap_actions_tokenizer_is_reproducible_from_the_benchmark_text(tmp_path):
    """The default action model's tokenizer: train_tokenizer.py --llava-json on the benchmark's
    JSON (only its distinct texts matter, so one clip a class gives the same corpus)."""
    import json

    from fixtures_llava import load_tool_module

    from mmllava.datasets.mocap_actions import CLASS_NAMES
    llava_sample = load_tool_module('tools/dataset_converters/mocap_actions').llava_sample
    ann = tmp_path / 'train_llava.json'
    ann.write_text(json.dumps([llava_sample(f'c{i}', f'c{i}.mp4', i)
                               for i in range(len(CLASS_NAMES))]))
    spec = importlib.util.spec_from_file_location(
        'train_tokenizer', REPO / 'tools' / 'misc' / 'train_tokenizer.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    corpus = tool.llava_json_corpus([str(ann)], 'vicuna_v1')
    assert not any('<video>' in line for line in corpus)
    assert 'walking backward' in corpus and any('ASSISTANT:' in line for line in corpus)
    path = train_sentencepiece(corpus, str(tmp_path / 'tok'), 480)
    shipped = REPO / 'resources' / 'llava-tiny_mocap-actions' / 'tokenizer.model'
    assert open(path, 'rb').read() == shipped.read_bytes()
    tok = SentencePieceTokenizer(str(shipped))
    assert all(len(tok.encode(name)) <= 4 for name in CLASS_NAMES)  # names are few pieces
