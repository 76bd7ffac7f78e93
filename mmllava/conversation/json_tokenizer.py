"""A ``tokenizer.json`` read through Hugging Face's ``tokenizers`` library, offline.

Why: a llava-hf folder saved by transformers 5 holds ``tokenizer.json`` and no
``tokenizer.model``, and the LLaVA-NeXT family's Qwen2 tokenizer exists only as
``tokenizer.json``. ``tokenizers`` reads it directly (no transformers, no protobuf, no hub) and
gives the ids transformers' tokenizer gives for the same file, with one exception: a LLaMA text
that starts with a space. sentencepiece (the original LLaVA's tokenizer) prepends its "▁" to it
too (``" What"`` -> ``▁▁What``), transformers 5's Metaspace pre-tokenizer does not; a prompt
chunk after a placeholder (``"<image> What is it?"``) is such a text. We give sentencepiece's
ids, which the released LLaVA checkpoints were trained on.

The interface is the one of :mod:`.tokenizer` (``encode(text, add_dummy_prefix)``,
``decode``, ``token_to_id``, ``bos/eos/pad/unk_token_id``, ``vocab_size``,
``dummy_prefix``). Special-token strings inside a text are encoded as plain text, as
:class:`~.tokenizer.SentencePieceTokenizer` does: a user's question cannot inject an EOS, and
the ``tokenizer.model`` and ``tokenizer.json`` of one model give the same conversation ids.
Templates insert special tokens by id.
"""
import copy
import json
import os.path as osp
from typing import Iterable, List, Optional

from mmllava.registry import TOKENIZERS

_META = '\u2581'  # sentencepiece's word boundary, "▁"
_SPECIAL_NAMES = ('bos', 'eos', 'pad', 'unk')


def _token_text(value) -> Optional[str]:
    """A special token as ``tokenizer_config.json`` writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get('content')
    return value if isinstance(value, str) else None


def _read_json(path: str) -> dict:
    if not osp.isfile(path):
        return {}
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _without_prefix(spec: dict) -> dict:
    """The tokenizer JSON with the "▁" a Metaspace LLaMA tokenizer prepends removed.

    transformers 5 writes it as the Metaspace pre-tokenizer's ``prepend_scheme``;
    transformers 4's legacy LLaMA converter as a ``Prepend`` normalizer.
    """
    spec = copy.deepcopy(spec)

    def strip(node):
        if not isinstance(node, dict):
            return node
        if node.get('type') == 'Metaspace':
            node['prepend_scheme'] = 'never'
            node.pop('add_prefix_space', None)
        if node.get('type') == 'Prepend' and node.get('prepend') == _META:
            return None
        for key in ('normalizers', 'pretokenizers'):
            if isinstance(node.get(key), list):
                node[key] = [n for n in (strip(n) for n in node[key]) if n is not None]
        return node

    spec['normalizer'] = strip(spec.get('normalizer'))
    spec['pre_tokenizer'] = strip(spec.get('pre_tokenizer'))
    return spec


@TOKENIZERS.register_module()
class JSONTokenizer:
    """A Hugging Face ``tokenizer.json`` (LLaMA/Vicuna, Mistral, Qwen2 ...), read offline.

    Args:
        path (str): A ``tokenizer.json`` file, or a folder holding one. Its special tokens come
            from ``tokenizer_config.json`` (else ``special_tokens_map.json``) beside it, else
            from LLaMA's ``<s>``, ``</s>``, ``<unk>`` when the vocabulary has them.
        pad_token_id (int, optional): Padding id. Defaults to the pad token's, else the unk
            id, else the EOS id.
        bos_token_id (int, optional): Overrides the BOS id.
        eos_token_id (int, optional): Overrides the EOS id.
    """

    def __init__(self, path: str, pad_token_id: Optional[int] = None,
                 bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None):
        from tokenizers import Tokenizer
        path = str(path)
        if osp.isdir(path):
            path = osp.join(path, 'tokenizer.json')
        if not osp.isfile(path):
            raise FileNotFoundError(f'No tokenizer.json at {path}')
        self.path = path
        with open(path, encoding='utf-8') as f:
            self._spec = json.load(f)
        self.tokenizer = Tokenizer.from_str(json.dumps(self._spec))
        self.tokenizer.encode_special_tokens = True
        self._no_prefix = None  # built on first need
        folder = osp.dirname(path)
        config = _read_json(osp.join(folder, 'tokenizer_config.json'))
        specials = _read_json(osp.join(folder, 'special_tokens_map.json'))
        ids = {}
        for name in _SPECIAL_NAMES:
            text = _token_text(config.get(f'{name}_token')) or _token_text(
                specials.get(f'{name}_token'))
            if text is None and name != 'pad':
                text = {'bos': '<s>', 'eos': '</s>', 'unk': '<unk>'}[name]
            ids[name] = None if text is None else self.tokenizer.token_to_id(text)
        self.unk_token_id = ids['unk']
        self.bos_token_id = bos_token_id if bos_token_id is not None else ids['bos']
        self.eos_token_id = eos_token_id if eos_token_id is not None else ids['eos']
        if pad_token_id is None:
            pad_token_id = next((i for i in (ids['pad'], ids['unk'], self.eos_token_id)
                                 if i is not None), None)
        self.pad_token_id = pad_token_id
        self._special = {t['id'] for t in self._spec.get('added_tokens', []) if t.get('special')}
        probe = self.tokenizer.encode('a', add_special_tokens=False).tokens
        self.dummy_prefix = bool(probe) and probe[0].startswith(_META)

    # tokenizers' Tokenizer pickles, but rebuilding from the spec is cheap and version-proof.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop('tokenizer')
        state['_no_prefix'] = None
        return state

    def __setstate__(self, state):
        from tokenizers import Tokenizer
        self.__dict__.update(state)
        self.tokenizer = Tokenizer.from_str(json.dumps(self._spec))
        self.tokenizer.encode_special_tokens = True

    @property
    def vocab_size(self) -> int:
        """Number of tokens, added tokens included."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> set:
        """Ids that ``decode(skip_special_tokens=True)`` drops."""
        ids = {i for i in (self.bos_token_id, self.eos_token_id, self.pad_token_id,
                           self.unk_token_id) if i is not None}
        return ids | self._special

    def encode(self, text: str, add_dummy_prefix: bool = True) -> List[int]:
        """Ids of ``text``; no BOS or EOS.

        Args:
            text (str): The text; special token strings in it are plain text here.
            add_dummy_prefix (bool): Let a LLaMA-style tokenizer prepend its "▁" (as the
                original LLaVA's sentencepiece does for every chunk). ``False`` encodes a chunk
                that continues a word.
        """
        if not text:
            return []
        if not self.dummy_prefix:  # byte-level BPE (Qwen2 ...): no prefix to add or drop
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        if self._no_prefix is None:
            from tokenizers import Tokenizer
            self._no_prefix = Tokenizer.from_str(json.dumps(_without_prefix(self._spec)))
            self._no_prefix.encode_special_tokens = True
        # sentencepiece's dummy prefix is a space before the text, even one that starts with a
        # space ("▁▁What"); a Metaspace pre-tokenizer skips it there. Writing the space out
        # gives sentencepiece's ids for every text, from either file format.
        text = ' ' + text if add_dummy_prefix else text
        return self._no_prefix.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``.

        With ``skip_special_tokens`` the special ids, negative ids (image placeholders) and ids
        outside the vocabulary are dropped. Without it, special ids are written as their token
        and an id outside the vocabulary raises ``ValueError``.
        """
        from .tokenizer import decodable_ids
        ids = decodable_ids(ids, self.vocab_size, self.special_ids, skip_special_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int:
        """Id of a token; ``KeyError`` if the tokenizer lacks it."""
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise KeyError(f'Token {token!r} is not in {self.path}')
        return token_id

    def id_to_token(self, token_id: int) -> str:
        """Token string of an id."""
        return self.tokenizer.id_to_token(int(token_id))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(path={self.path!r}, vocab_size={self.vocab_size}, '
                f'bos={self.bos_token_id}, eos={self.eos_token_id}, pad={self.pad_token_id})')
