"""tokenizer.json through the tokenizers library: the ids of transformers and of sentencepiece."""
import json
import pickle
import shutil

import pytest

from mmllava.conversation import (
    JSONTokenizer,
    SentencePieceTokenizer,
    build_tokenizer,
    tokenize_conversation,
)

TEXTS = ['A man is running.', ' two  spaces and a leading one', '\nWhat is this?',
         'USER: What is the person doing? ASSISTANT:', 'digits 12345 and 3.14!',
         'ÄÖÜ äöü 日本語 émoji 🙂', 'tabs\tand\nnewlines\n\n', 'walking backward</s>', 'x']


def _save_hf_folder(sp_model: str, folder):
    """transformers 5's save_pretrained of the llava-hf tokenizer: tokenizer.json only."""
    from mmllava.convert import hf_tokenizer_from_sentencepiece
    tok = hf_tokenizer_from_sentencepiece(sp_model)
    tok.add_tokens(['<image>'], special_tokens=True)
    tok.add_special_tokens({'pad_token': '<pad>'})
    tok.save_pretrained(str(folder))
    assert not (folder / 'tokenizer.model').exists()
    return folder


def _legacy(folder, out):
    """The same tokenizer as transformers 4's legacy LLaMA converter wrote it: a Prepend
    normalizer and no pre-tokenizer."""
    shutil.copytree(folder, out)
    spec = json.loads((out / 'tokenizer.json').read_text())
    assert spec['pre_tokenizer']['type'] == 'Metaspace'
    spec['normalizer'] = {'type': 'Sequence', 'normalizers': [
        {'type': 'Prepend', 'prepend': '\u2581'},
        {'type': 'Replace', 'pattern': {'String': ' '}, 'content': '\u2581'}]}
    spec['pre_tokenizer'] = None
    (out / 'tokenizer.json').write_text(json.dumps(spec))
    return out


@pytest.fixture(scope='module')
def folders(sp_tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp('json_tok')
    modern = _save_hf_folder(sp_tokenizer.model_file, root / 'modern')
    return dict(modern=modern, legacy=_legacy(modern, root / 'legacy'))


@pytest.mark.parametrize('flavour', ['modern', 'legacy'])
def test_ids_equal_transformers_and_sentencepiece(folders, sp_tokenizer, flavour):
    from transformers import AutoTokenizer
    folder = folders[flavour]
    ours = JSONTokenizer(str(folder))
    hf = AutoTokenizer.from_pretrained(str(folder))
    assert ours.dummy_prefix
    for text in TEXTS:
        got = ours.encode(text)
        assert got == sp_tokenizer.encode(text), text  # the original LLaVA's ids, always
        # transformers agrees but for a text that starts with a space (its Metaspace
        # pre-tokenizer adds no "▁" there; sentencepiece does) and for special strings in the
        # text (it matches them as tokens; we do not).
        if '</s>' not in text and not text.startswith(' '):
            assert got == hf(text, add_special_tokens=False).input_ids, text
        # A chunk that continues a word: no dummy prefix, as sentencepiece without it.
        assert ours.encode(text, add_dummy_prefix=False) == \
            sp_tokenizer.encode(text, add_dummy_prefix=False), text
    assert ours.encode('walking backward</s>')[-1] != 2  # "</s>" as text, not EOS
    assert (ours.bos_token_id, ours.eos_token_id, ours.unk_token_id) == (1, 2, 0)
    assert ours.pad_token_id == ours.token_to_id('<pad>') == 1001
    assert ours.vocab_size == 1002
    ids = ours.encode('A man is running.')
    assert ours.decode([1] + ids + [2, 1000, -200]) == 'A man is running.'
    assert ours.decode(ids + [2], skip_special_tokens=False).endswith('</s>')
    with pytest.raises(ValueError, match='outside the vocabulary'):
        ours.decode([5000], skip_special_tokens=False)
    with pytest.raises(KeyError, match='<im_end>'):
        ours.token_to_id('<im_end>')


@pytest.mark.parametrize('flavour', ['modern', 'legacy'])
def test_conversation_ids_equal_with_either_file(folders, sp_tokenizer, flavour):
    # A space after a placeholder starts a chunk with a space ("▁▁What" in sentencepiece).
    messages = [dict(role='user', content='Look at <image> What is the person doing?'),
                dict(role='assistant', content='walking backward'),
                dict(role='user', content='And now <image> ?'), dict(role='assistant', content='x')]
    ours = JSONTokenizer(str(folders[flavour]))
    for template in ('vicuna_v1', 'plain', 'llava_llama_2'):
        got = tokenize_conversation(messages[:2] if template == 'plain' else messages, ours,
                                    template, num_visual_tokens=4)
        want = tokenize_conversation(messages[:2] if template == 'plain' else messages,
                                     sp_tokenizer, template, num_visual_tokens=4)
        assert got == want, template


def test_folder_picks_its_file_and_pickles(folders, sp_tokenizer, tmp_path):
    tok = build_tokenizer(str(folders['modern']))
    assert isinstance(tok, JSONTokenizer)
    both = tmp_path / 'both'
    shutil.copytree(folders['modern'], both)
    shutil.copyfile(sp_tokenizer.model_file, both / 'tokenizer.model')
    assert isinstance(build_tokenizer(str(both)), SentencePieceTokenizer)
    assert isinstance(build_tokenizer(str(both / 'tokenizer.json')), JSONTokenizer)
    with pytest.raises(FileNotFoundError, match='no tokenizer.model'):
        build_tokenizer(str(tmp_path))
    again = pickle.loads(pickle.dumps(tok))
    assert again.encode('A man, running', add_dummy_prefix=False) == \
        tok.encode('A man, running', add_dummy_prefix=False)
    assert again.eos_token_id == tok.eos_token_id


def test_byte_level_tokenizer_json(hf_tokenizer):
    """A Qwen-style byte-level BPE folder: the ids of transformers' tokenizer, no "▁"."""
    ours = JSONTokenizer(hf_tokenizer.path)
    assert not ours.dummy_prefix
    assert ours.eos_token_id == hf_tokenizer.eos_token_id
    assert ours.pad_token_id == hf_tokenizer.pad_token_id
    for text in TEXTS[:7]:
        assert ours.encode(text) == hf_tokenizer.encode(text), text
