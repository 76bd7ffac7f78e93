"""Tokenizers with one small interface: sentencepiece (LLaMA/Vicuna) and Hugging Face (BPE).

Every tokenizer here offers ``bos_token_id``, ``eos_token_id``, ``pad_token_id``,
``vocab_size``, ``dummy_prefix``, ``encode(text)`` (no special tokens added), ``decode(ids)``
and ``token_to_id(token)``. Conversation tokenization (:mod:`.tokenization`) needs no more.

Why our own sentencepiece wrapper: transformers 5 dropped the sentencepiece-backed "slow"
``LlamaTokenizer``, yet the original LLaVA's ids are sentencepiece's ``encode`` per text chunk
(legacy LLaMA behaviour: every chunk gets the dummy prefix "▁").
"""
import os
import os.path as osp
from typing import Iterable, List, Optional, Sequence, Union

import sentencepiece as spm

from mmllava.registry import TOKENIZERS

# --------------------------------------------------------------------------- protobuf wire
# sentencepiece has no switch for the dummy prefix at encode time and protobuf is not among our
# dependencies, so we read and rewrite the one boolean in the serialized model ourselves.
# ModelProto field 3 = normalizer_spec; NormalizerSpec field 3 = add_dummy_prefix (default true).
_NORMALIZER_SPEC = 3
_ADD_DUMMY_PREFIX = 3


def _read_varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _write_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value, raw_bytes)`` of a serialized message."""
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = _read_varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f'Unsupported protobuf wire type {wire} in a sentencepiece model')
        yield field, wire, value, buf[start:pos]


def _normalizer_spec(proto: bytes) -> bytes:
    for field, wire, value, _ in _fields(proto):
        if field == _NORMALIZER_SPEC and wire == 2:
            return value
    return b''


def _proto_add_dummy_prefix(proto: bytes) -> bool:
    for field, wire, value, _ in _fields(_normalizer_spec(proto)):
        if field == _ADD_DUMMY_PREFIX and wire == 0:
            return bool(value)
    return True  # the proto2 default


def _proto_without_dummy_prefix(proto: bytes) -> bytes:
    spec = b''.join(raw for field, _, _, raw in _fields(_normalizer_spec(proto))
                    if field != _ADD_DUMMY_PREFIX)
    spec += _write_varint(_ADD_DUMMY_PREFIX << 3) + _write_varint(0)
    out = b''.join(raw for field, _, _, raw in _fields(proto) if field != _NORMALIZER_SPEC)
    return out + _write_varint(_NORMALIZER_SPEC << 3 | 2) + _write_varint(len(spec)) + spec


def decodable_ids(ids: Iterable[int], size: int, special: set, skip_special: bool) -> List[int]:
    """The ids a tokenizer's ``decode`` turns into text, by the one rule of this module.

    Skipping special tokens: ``special`` ids, negative ids (image placeholders) and ids outside
    the vocabulary (``size``) are dropped. Otherwise an id outside the vocabulary raises
    ``ValueError``.
    """
    ids = [int(i) for i in ids]
    if skip_special:
        return [i for i in ids if 0 <= i < size and i not in special]
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(f'Ids {bad[:5]} are outside the vocabulary (size {size}); decode '
                         'with skip_special_tokens=True')
    return ids


# --------------------------------------------------------------------------- tokenizers
@TOKENIZERS.register_module()
class SentencePieceTokenizer:
    """A sentencepiece model used the way the original LLaVA used LLaMA's slow tokenizer.

    Args:
        model_file (str): A ``tokenizer.model`` file, or a directory that holds one.
        pad_token_id (int, optional): Padding id. Defaults to the unk id (0 for LLaMA), as the
            original LLaVA pads with unk.
        bos_token_id (int, optional): Overrides the model's BOS id.
        eos_token_id (int, optional): Overrides the model's EOS id.
    """

    def __init__(self, model_file: str, pad_token_id: Optional[int] = None,
                 bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None):
        model_file = str(model_file)
        if osp.isdir(model_file):
            model_file = osp.join(model_file, 'tokenizer.model')
        if not osp.isfile(model_file):
            raise FileNotFoundError(f'No sentencepiece model at {model_file}')
        self.model_file = model_file
        with open(model_file, 'rb') as f:
            self._load(f.read())
        unk = self.sp.unk_id()
        self.unk_token_id = unk
        self.bos_token_id = bos_token_id if bos_token_id is not None else self._opt(
            self.sp.bos_id())
        self.eos_token_id = eos_token_id if eos_token_id is not None else self._opt(
            self.sp.eos_id())
        self.pad_token_id = pad_token_id if pad_token_id is not None else unk

    def _load(self, proto: bytes) -> None:
        self._proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        self._sp_no_prefix = None  # built on first need
        self.dummy_prefix = _proto_add_dummy_prefix(proto)
        # Looked up once: decode consults them on every call (32000 pieces for LLaMA).
        self._control_ids = frozenset(i for i in range(self.sp.get_piece_size())
                                      if self.sp.is_control(i))

    @staticmethod
    def _opt(token_id: int) -> Optional[int]:
        return token_id if token_id >= 0 else None

    # sentencepiece processors are not reliably picklable: dataloader workers get the bytes.
    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ('sp', '_sp_no_prefix', '_control_ids'):
            state.pop(key)
        return state

    def __setstate__(self, state):
        proto = state.pop('_proto')
        self.__dict__.update(state)
        self._load(proto)

    @property
    def vocab_size(self) -> int:
        """Number of pieces in the sentencepiece model."""
        return self.sp.get_piece_size()

    @property
    def special_ids(self) -> set:
        """Ids that ``decode(skip_special_tokens=True)`` drops (control, unk and pad ids)."""
        ids = {i for i in (self.bos_token_id, self.eos_token_id, self.pad_token_id,
                           self.unk_token_id) if i is not None}
        return ids | self._control_ids

    def encode(self, text: str, add_dummy_prefix: bool = True) -> List[int]:
        """Ids of ``text``; no BOS or EOS.

        Args:
            text (str): The text; special token strings in it are plain text here.
            add_dummy_prefix (bool): Let sentencepiece prepend its "▁" (the legacy LLaMA
                behaviour for every chunk). ``False`` encodes a chunk that continues a word.
        """
        if not text:
            return []
        if add_dummy_prefix or not self.dummy_prefix:
            return self.sp.encode(text)
        if self._sp_no_prefix is None:
            self._sp_no_prefix = spm.SentencePieceProcessor(
                model_proto=_proto_without_dummy_prefix(self._proto))
        return self._sp_no_prefix.encode(text)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``.

        With ``skip_special_tokens`` the special ids, negative ids (image placeholders) and ids
        outside the sentencepiece vocabulary (e.g. llava-hf's ``<image>`` 32000 and ``<pad>``
        32001) are dropped. Without it, special ids are written as their piece (``</s>``) and an
        id outside the vocabulary raises ``ValueError``.
        """
        ids = decodable_ids(ids, self.vocab_size, self.special_ids, skip_special_tokens)
        if skip_special_tokens:
            return self.sp.decode(ids)
        # sentencepiece drops control pieces when decoding: write them out ourselves.
        parts, run = [], []
        for i in ids:
            if i in self._control_ids:
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append(self.sp.id_to_piece(i))
            else:
                run.append(i)
        if run:
            parts.append(self.sp.decode(run))
        return ''.join(parts)

    def token_to_id(self, token: str) -> int:
        """Id of a piece; ``KeyError`` if the model lacks it."""
        token_id = self.sp.piece_to_id(token)
        if token_id == self.unk_token_id and token != self.sp.id_to_piece(token_id):
            raise KeyError(f'Token {token!r} is not in the sentencepiece model {self.model_file}')
        return token_id

    def id_to_token(self, token_id: int) -> str:
        """Piece of an id."""
        return self.sp.id_to_piece(int(token_id))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(model_file={self.model_file!r}, '
                f'vocab_size={self.vocab_size}, bos={self.bos_token_id}, '
                f'eos={self.eos_token_id}, pad={self.pad_token_id})')


@TOKENIZERS.register_module()
class HFTokenizer:
    """A Hugging Face tokenizer read from a local directory (BPE families: Qwen/chatml ...).

    Args:
        path (str): A local directory written by ``save_pretrained``. Never a hub name: the
            toolbox does not download at build time.
        pad_token_id (int, optional): Padding id. Defaults to the tokenizer's pad id, else its
            EOS id.
        **kwargs: Passed to ``AutoTokenizer.from_pretrained``.
    """

    def __init__(self, path: str, pad_token_id: Optional[int] = None, **kwargs):
        path = str(path)
        if not osp.isdir(path):
            raise FileNotFoundError(
                f'HFTokenizer needs a local tokenizer directory; {path!r} does not exist. '
                'Download it once (e.g. `huggingface-cli download NAME --local-dir DIR`) and '
                'give DIR.')
        from transformers import AutoTokenizer
        kwargs.setdefault('local_files_only', True)
        self.path = path
        self.tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        tok = self.tokenizer
        self.bos_token_id = tok.bos_token_id
        self.eos_token_id = tok.eos_token_id
        self.unk_token_id = tok.unk_token_id
        if pad_token_id is None:
            pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.pad_token_id = pad_token_id
        # Metaspace (LLaMA-like) tokenizers prepend "▁" to every encode call; byte-level BPE not.
        probe = tok.convert_ids_to_tokens(self.encode('a'))
        self.dummy_prefix = bool(probe) and probe[0].startswith('\u2581')

    @property
    def vocab_size(self) -> int:
        """Number of tokens, added tokens included."""
        return len(self.tokenizer)

    def encode(self, text: str, add_dummy_prefix: bool = True) -> List[int]:
        """Ids of ``text`` with no special tokens added (special token strings in the text are
        still matched, as Hugging Face tokenizers do)."""
        if not text:
            return []
        if not add_dummy_prefix and self.dummy_prefix:
            raise NotImplementedError(
                f'{self.path}: encoding a chunk without the "▁" prefix is not supported for '
                'Hugging Face Metaspace tokenizers; use SentencePieceTokenizer with its '
                'tokenizer.model')
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; negative and out-of-vocabulary ids are dropped when skipping special
        tokens, and raise ``ValueError`` otherwise."""
        ids = decodable_ids(ids, self.vocab_size, set(), skip_special_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int:
        """Id of a token; ``KeyError`` if the tokenizer lacks it."""
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or (token_id == self.unk_token_id
                                and token != self.tokenizer.unk_token):
            raise KeyError(f'Token {token!r} is not in the tokenizer at {self.path}')
        return token_id

    def id_to_token(self, token_id: int) -> str:
        """Token string of an id."""
        return self.tokenizer.convert_ids_to_tokens(int(token_id))

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(path={self.path!r}, vocab_size={self.vocab_size}, '
                f'bos={self.bos_token_id}, eos={self.eos_token_id}, pad={self.pad_token_id})')


TokenizerType = Union[SentencePieceTokenizer, HFTokenizer]


def build_tokenizer(cfg: Union[dict, str, os.PathLike, object]) -> TokenizerType:
    """Build a tokenizer.

    Args:
        cfg: A config dict (``type`` + keyword arguments, from ``TOKENIZERS``); a path: a
            sentencepiece ``.model`` file (-> :class:`SentencePieceTokenizer`), a
            ``tokenizer.json`` (-> :class:`~.json_tokenizer.JSONTokenizer`), or a folder
            holding either (``tokenizer.model`` first: the original LLaVA's ids, and what
            llava-hf folders saved before transformers 5 also hold); or a tokenizer,
            returned as is.
    """
    if isinstance(cfg, dict):
        if 'type' not in cfg:
            raise ValueError(f'A tokenizer config needs a "type": {cfg}')
        return TOKENIZERS.build(dict(cfg))
    if isinstance(cfg, (str, os.PathLike)):
        return tokenizer_from_path(str(cfg))
    if cfg is None:
        raise ValueError('No tokenizer given: pass a config dict, a tokenizer.model path or a '
                         'tokenizer')
    missing = [name for name in ('encode', 'decode', 'token_to_id', 'eos_token_id')
               if not hasattr(cfg, name)]
    if missing:
        raise TypeError(f'{type(cfg).__name__} is not a tokenizer (it lacks {missing})')
    return cfg


def tokenizer_file(path: str) -> str:
    """The tokenizer file a path names: itself, or the folder's ``tokenizer.model``, else its
    ``tokenizer.json``.

    Raises:
        FileNotFoundError: Nothing there, or a folder with neither file.
    """
    if osp.isdir(path):
        for name in ('tokenizer.model', 'tokenizer.json'):
            if osp.isfile(osp.join(path, name)):
                return osp.join(path, name)
        raise FileNotFoundError(f'{path} holds no tokenizer.model (sentencepiece) and no '
                                'tokenizer.json (Hugging Face)')
    if not osp.isfile(path):
        raise FileNotFoundError(f'No tokenizer at {path}')
    return path


@TOKENIZERS.register_module()
def tokenizer_from_path(path: str) -> TokenizerType:
    """A tokenizer from a file or folder (see :func:`tokenizer_file`)."""
    path = tokenizer_file(path)
    if path.endswith('.json'):
        from .json_tokenizer import JSONTokenizer
        return JSONTokenizer(path)
    return SentencePieceTokenizer(path)


def train_sentencepiece(texts: Iterable[str], out_dir: str, vocab_size: int,
                        model_type: str = 'bpe',
                        user_defined_symbols: Sequence[str] = (),
                        character_coverage: float = 1.0, seed: int = 0) -> str:
    """Train a LLaMA-like sentencepiece model offline and write ``out_dir/tokenizer.model``.

    LLaMA's settings: unk 0, bos 1, eos 2, no pad piece, byte fallback, dummy prefix, digits
    split, no normalization and whitespace kept as is. One thread and a fixed seed make the
    result depend on the texts only.

    Args:
        texts: Training sentences; texts with newlines are split into lines.
        out_dir (str): Where ``tokenizer.model`` goes (created if needed).
        vocab_size (int): Pieces in the model, the 3 special and 256 byte pieces included.
        model_type (str): ``'bpe'`` (LLaMA's) or ``'unigram'``.
        user_defined_symbols: Pieces always kept whole, e.g. ``<|im_end|>``.
        character_coverage (float): Share of characters covered by pieces; the rest fall back
            to bytes.
        seed (int): sentencepiece's random seed.

    Returns:
        str: The path of the written model.
    """
    import io
    sentences = [line for text in texts for line in str(text).splitlines() if line.strip()]
    if not sentences:
        raise ValueError('train_sentencepiece needs some text')
    os.makedirs(out_dir, exist_ok=True)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, character_coverage=character_coverage,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, add_dummy_prefix=True,
        split_digits=True, normalization_rule_name='identity', remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, user_defined_symbols=list(user_defined_symbols),
        num_threads=1, shuffle_input_sentence=False, input_sentence_size=0,
        max_sentence_length=1 << 14, minloglevel=2)
    path = osp.join(out_dir, 'tokenizer.model')
    with open(path, 'wb') as f:
        f.write(model.getvalue())
    return path
