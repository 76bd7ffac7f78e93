"""Tokenizer files of converted checkpoints, and an HF tokenizer from a SentencePiece model."""
import os.path as osp
import shutil
from typing import List, Optional

TOKENIZER_FILES = ('tokenizer.model', 'tokenizer.json', 'tokenizer_config.json',
                   'special_tokens_map.json', 'added_tokens.json', 'chat_template.json',
                   'chat_template.jinja')
_PROBE = 'A chat between a curious user and an AI.\n  USER: What is  this? 12 ÄÖ 日本 ASSISTANT:'


def copy_tokenizer_files(src_dir: str, out_dir: str) -> List[str]:
    """Copy the tokenizer files found in ``src_dir``; returns the copied names."""
    copied = []
    for name in TOKENIZER_FILES:
        if osp.isfile(osp.join(src_dir, name)):
            shutil.copyfile(osp.join(src_dir, name), osp.join(out_dir, name))
            copied.append(name)
    return copied


def hf_tokenizer_from_sentencepiece(model_file: str, **kwargs):
    """A transformers ``LlamaTokenizer`` equivalent to a BPE SentencePiece model.

    transformers 5 converts ``tokenizer.model`` only through protobuf; this reads the pieces
    and scores through sentencepiece's own API instead and rebuilds the BPE merges as
    transformers' converter does. The result is checked against SentencePiece on a probe text.

    Args:
        model_file (str): The SentencePiece model (LLaMA's ``tokenizer.model``).
        **kwargs: More ``LlamaTokenizer`` arguments.

    Raises:
        ValueError: The model does not tokenize like its conversion (e.g. a Unigram model).
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_file=model_file)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    specials = {sp.id_to_piece(i) for i in (sp.unk_id(), sp.bos_id(), sp.eos_id()) if i >= 0}
    merges = generate_merges(vocab, scores, skip_tokens=specials)
    kwargs.setdefault('unk_token', sp.id_to_piece(sp.unk_id()))
    if sp.bos_id() >= 0:
        kwargs.setdefault('bos_token', sp.id_to_piece(sp.bos_id()))
    if sp.eos_id() >= 0:
        kwargs.setdefault('eos_token', sp.id_to_piece(sp.eos_id()))
    tok = LlamaTokenizer(vocab=vocab, merges=merges, **kwargs)
    got = tok(_PROBE, add_special_tokens=False).input_ids
    want = sp.encode(_PROBE)
    if got != want:
        raise ValueError(f'{model_file}: the HF conversion tokenizes differently from '
                         'SentencePiece (only BPE models such as LLaMA\'s are supported): '
                         f'{got[:12]} vs {want[:12]}')
    return tok


def load_hf_tokenizer(folder: str):
    """The folder's HF tokenizer: ``tokenizer.json`` if present, else from ``tokenizer.model``.

    Raises:
        FileNotFoundError: Neither file is there.
    """
    if osp.isfile(osp.join(folder, 'tokenizer.json')):
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(folder)
    if osp.isfile(osp.join(folder, 'tokenizer.model')):
        return hf_tokenizer_from_sentencepiece(osp.join(folder, 'tokenizer.model'))
    raise FileNotFoundError(f'No tokenizer.json or tokenizer.model in {folder}')


def tokenizer_folder(path: Optional[str]) -> Optional[str]:
    """The folder of a tokenizer path (a folder, or a file inside one)."""
    if path is None:
        return None
    return path if osp.isdir(path) else osp.dirname(path)
