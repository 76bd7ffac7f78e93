"""Safe checkpoint IO: weights are data, never code.

Model weights are read from safetensors, or with ``torch.load(weights_only=True)``; a file that
needs unpickling of arbitrary objects is refused (its code is not run). Loading into a model is
strict by default: missing keys, unexpected keys and shape mismatches are all reported at once.
"""
import json
import os
import os.path as osp
import pickle
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn

StateDict = Dict[str, torch.Tensor]
PathLike = Union[str, os.PathLike]

SAFETENSORS_INDEX = 'model.safetensors.index.json'
TORCH_INDEX = 'pytorch_model.bin.index.json'
_SINGLE_FILES = ('model.safetensors', 'pytorch_model.bin', 'model.pth', 'model.pt')
_TORCH_EXTS = ('.bin', '.pth', '.pt')
# Buffers recomputed at build time; old checkpoints carry them, ours (and transformers') don't.
SILENTLY_DROPPED = ('rotary_emb.inv_freq', )
_MAX_LISTED = 30


class CheckpointError(ValueError):
    """A weights file or folder that cannot be read (missing, corrupt, truncated...)."""


class UnsafeCheckpointError(CheckpointError):
    """A torch file that holds pickled code or objects beyond plain tensors and containers."""


class StateDictMismatchError(ValueError):
    """Weights that do not fit a model: missing, unexpected or wrongly shaped keys.

    Attributes:
        missing (list[str]): Keys of the model absent from the weights.
        unexpected (list[str]): Keys of the weights absent from the model.
        mismatched (list[tuple]): ``(key, expected_shape, got_shape)``.
    """

    def __init__(self, missing: List[str], unexpected: List[str],
                 mismatched: List[Tuple[str, tuple, tuple]], source: str = 'the weights'):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        super().__init__(format_mismatch(missing, unexpected, mismatched, source))


class LoadResult(NamedTuple):
    """What :func:`load_model_weights` found (all empty after a strict load)."""
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, tuple, tuple]]


def _listing(items: list) -> str:
    lines = [f'    {item}' for item in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f'    ... and {len(items) - _MAX_LISTED} more')
    return '\n'.join(lines)


def format_mismatch(missing: List[str], unexpected: List[str],
                    mismatched: List[Tuple[str, tuple, tuple]],
                    source: str = 'the weights') -> str:
    """A readable report of the keys that do not fit."""
    parts = [f'{source} do not fit the model:']
    if missing:
        parts.append(f'  {len(missing)} missing keys (in the model, not in {source}):\n'
                     + _listing(sorted(missing)))
    if unexpected:
        parts.append(f'  {len(unexpected)} unexpected keys (in {source}, not in the model):\n'
                     + _listing(sorted(unexpected)))
    if mismatched:
        rows = [f'{k}: expected {list(e)}, got {list(g)}' for k, e, g in sorted(mismatched)]
        parts.append(f'  {len(mismatched)} shape mismatches:\n' + _listing(rows))
    parts.append('  Check that the config describes the architecture of these weights '
                 '(hidden sizes, layers, vocabulary rows, projector type).')
    return '\n'.join(parts)


# ---------------------------------------------------------------------------- reading
def _unwrap(obj, path: str) -> StateDict:
    """Return the tensor dict inside mmengine / plain-torch wrappers."""
    for key in ('state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f'{path} holds a {type(obj).__name__}, not a dict of tensors')
    bad = [f'{k} ({type(v).__name__})' for k, v in obj.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(f'{path} is not a plain state dict; non-tensor entries: '
                              f'{bad[:10]}' + (' ...' if len(bad) > 10 else ''))
    return dict(obj)


def _load_safetensors(path: str) -> StateDict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path, device='cpu')
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f'{path} is not a readable safetensors file (truncated or '
                              f'corrupt?): {e}') from e


def _load_torch(path: str) -> StateDict:
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses before anything is constructed: nothing in the file ran.
        raise UnsafeCheckpointError(
            f'{path} holds pickled code or objects beyond tensors, which are refused: nothing '
            f'in it was executed (torch.load(weights_only=True) said: {str(e).splitlines()[0]}).'
            ' Weights must be data. If you trust the file and its origin, re-save its tensors '
            'once, in a trusted environment, as safetensors (e.g. `save_weights(sd, '
            '"model.safetensors")` with mmllava.engine.checkpoint after loading it with '
            'weights_only=False), or allow the specific classes with '
            'torch.serialization.add_safe_globals.') from e
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f'{path} is not a readable torch file (truncated or corrupt?): '
                              f'{e}') from e
    return _unwrap(obj, path)


def load_weights(path: PathLike, progress: bool = False) -> StateDict:
    """Read a state dict from a weights file or folder, safely, onto the CPU.

    Args:
        path (str | PathLike): A ``.safetensors`` file; a ``.bin``/``.pth``/``.pt`` file (read
            with ``weights_only=True``); or a folder with one weights file or a sharded
            checkpoint (``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``).
            mmengine-style ``{'state_dict': ...}`` and ``{'model': ...}`` wrappers are unwrapped.
        progress (bool): Show a progress bar over shards.

    Returns:
        dict[str, Tensor]: The tensors, with their stored dtypes.

    Raises:
        UnsafeCheckpointError: A torch file needs arbitrary unpickling (nothing was executed).
        CheckpointError: The path is missing, unreadable, truncated or not a state dict.
    """
    path = str(path)
    if osp.isdir(path):
        return _load_folder(path, progress)
    if not osp.isfile(path):
        raise CheckpointError(f'No weights at {path}')
    if path.endswith('.safetensors'):
        return _load_safetensors(path)
    if path.endswith(_TORCH_EXTS):
        return _load_torch(path)
    if path.endswith('.json'):
        return _load_sharded(path, progress)
    raise CheckpointError(f'Unknown weights format {path!r}: expected .safetensors, .bin, .pth '
                          'or .pt (or a folder)')


def weight_files(folder: PathLike) -> List[str]:
    """The weights files of a checkpoint folder, in shard order.

    Raises:
        CheckpointError: The folder holds no weights, or several candidates and no index.
    """
    folder = str(folder)
    for index in (SAFETENSORS_INDEX, TORCH_INDEX):
        if osp.isfile(osp.join(folder, index)):
            with open(osp.join(folder, index)) as f:
                weight_map = json.load(f)['weight_map']
            return [osp.join(folder, name) for name in dict.fromkeys(weight_map.values())]
    for name in _SINGLE_FILES:
        if osp.isfile(osp.join(folder, name)):
            return [osp.join(folder, name)]
    files = sorted(f for f in os.listdir(folder) if f.endswith(('.safetensors', ) + _TORCH_EXTS))
    if len(files) == 1:
        return [osp.join(folder, files[0])]
    what = f'several weights files {files} and no index' if files else 'no weights file'
    raise CheckpointError(f'{folder} holds {what} (expected model.safetensors, '
                          f'pytorch_model.bin, or a sharded checkpoint with {SAFETENSORS_INDEX} '
                          f'or {TORCH_INDEX})')


def _load_sharded(index_path: str, progress: bool) -> StateDict:
    folder = osp.dirname(index_path)
    with open(index_path) as f:
        weight_map = json.load(f)['weight_map']
    files = [osp.join(folder, name) for name in dict.fromkeys(weight_map.values())]
    return _load_files(files, progress, expected=set(weight_map))


def _load_folder(folder: str, progress: bool) -> StateDict:
    files = weight_files(folder)
    expected = None
    for index in (SAFETENSORS_INDEX, TORCH_INDEX):
        if osp.isfile(osp.join(folder, index)):
            with open(osp.join(folder, index)) as f:
                expected = set(json.load(f)['weight_map'])
            break
    return _load_files(files, progress, expected)


def _load_files(files: List[str], progress: bool, expected: Optional[set] = None) -> StateDict:
    state_dict: StateDict = {}
    iterator = files
    if progress and len(files) > 1:
        from tqdm import tqdm
        iterator = tqdm(files, desc='Loading shards', unit='shard')
    for file in iterator:
        if not osp.isfile(file):
            raise CheckpointError(f'Shard {file} named by the index is missing')
        shard = load_weights(file)
        overlap = state_dict.keys() & shard.keys()
        if overlap:
            raise CheckpointError(f'Keys appear in several shards: {sorted(overlap)[:10]}')
        state_dict.update(shard)
    if expected is not None and expected != set(state_dict):
        raise CheckpointError(
            'The shards do not match their index: missing '
            f'{sorted(expected - set(state_dict))[:10]}, extra '
            f'{sorted(set(state_dict) - expected)[:10]}')
    return state_dict


EMBED_KEY = 'llm.model.embed_tokens.weight'
# The same tensor in the LoRA layout (merge_lora.py --no-merge, a LoRA run's checkpoints).
LORA_EMBED_KEY = 'llm.base_model.model.model.embed_tokens.weight'


def stored_shape(path: PathLike, key: str) -> Optional[Tuple[int, ...]]:
    """The shape of one tensor of a weights file or folder, read from safetensors headers
    (one file, or the shards of an index) without the data.

    Returns None where no safetensors file holds ``key``: torch files are not read here (that
    would load them twice; the strict loader reports their shapes).
    """
    path = str(path)
    files = weight_files(path) if osp.isdir(path) else [path]
    for file in files:
        if not osp.isfile(file):
            raise CheckpointError(f'No weights at {file}')
        if file.endswith('.safetensors'):
            from safetensors import SafetensorError, safe_open
            try:
                with safe_open(file, framework='pt') as f:
                    if key in f.keys():
                        return tuple(f.get_slice(key).get_shape())
            except (SafetensorError, OSError) as e:
                raise CheckpointError(f'{file} is not a readable safetensors file: {e}') from e
        elif file.endswith('.json'):
            return stored_shape(osp.dirname(file), key)
    return None


def align_vocab_rows(model_cfg: dict, paths, logger=None) -> Optional[int]:
    """Give ``model_cfg``'s LLM the vocabulary rows of the weights it will load.

    A llava-hf conversion holds 32064 rows (``<image>``, ``<pad>`` and padding added to
    LLaMA's 32000), an original one 32000; configs that start from either (``load_base`` of the
    finetune, LoRA and action recipes) build the rows the base weights have. Every other
    shape must still match: the loader stays strict.

    Args:
        model_cfg (dict): A config's ``model`` (changed in place).
        paths: The weights files or folders to be loaded, in order (later ones win).
        logger: Where to say that the rows changed (``print`` when None).

    Returns:
        int | None: The rows now configured, or None when no file holds the embeddings.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    rows = None
    for path in paths or []:
        if not osp.exists(str(path)):
            continue  # the loader names it if it is needed (a complete checkpoint needs none)
        shape = stored_shape(path, EMBED_KEY) or stored_shape(path, LORA_EMBED_KEY)
        if shape is not None:
            rows = shape[0]
    llm = (model_cfg.get('llm') or {}).get('config')
    if rows is None or llm is None or llm.get('vocab_size') == rows:
        return rows
    message = (f'The LLM gets {rows} vocabulary rows, as the weights it loads hold; the '
               f'config said {llm.get("vocab_size")}')
    (logger.info if logger is not None else print)(message)
    llm['vocab_size'] = rows
    return rows


# ---------------------------------------------------------------------------- writing
def save_weights(state_dict: Mapping[str, torch.Tensor], path: PathLike,
                 metadata: Optional[Dict[str, str]] = None) -> None:
    """Write a state dict as one safetensors file.

    Tensors are moved to the CPU and made contiguous; tensors that share memory (tied
    weights, views) are copied, since safetensors stores each tensor on its own.

    Args:
        state_dict (Mapping[str, Tensor]): The tensors.
        path (str | PathLike): The ``.safetensors`` file to write.
        metadata (dict[str, str], optional): Header metadata; ``format='pt'`` is always set
            (transformers expects it).
    """
    from safetensors.torch import save_file
    seen = set()
    out = {}
    for key, value in state_dict.items():
        if not torch.is_tensor(value):
            raise TypeError(f'{key} is a {type(value).__name__}, not a tensor')
        value = value.detach().cpu().contiguous()
        storage = value.untyped_storage()
        ptr = storage.data_ptr()
        partial = storage.nbytes() != value.numel() * value.element_size()
        if partial or (ptr in seen and value.numel()):
            value = value.clone()
        seen.add(value.untyped_storage().data_ptr())
        out[key] = value
    os.makedirs(osp.dirname(osp.abspath(str(path))), exist_ok=True)
    save_file(out, str(path), metadata={**(metadata or {}), 'format': 'pt'})


# ---------------------------------------------------------------------------- model loading
def drop_silent_keys(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Drop the keys that are recomputed at build time (``rotary_emb.inv_freq``)."""
    return {k: v for k, v in state_dict.items() if not k.endswith(SILENTLY_DROPPED)}


def compare_state_dict(expected: Mapping[str, tuple], state_dict: Mapping[str, torch.Tensor]
                       ) -> LoadResult:
    """Compare a state dict against expected ``{key: shape}``."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [(k, tuple(expected[k]), tuple(v.shape)) for k, v in state_dict.items()
                  if k in expected and tuple(expected[k]) != tuple(v.shape)]
    return LoadResult(missing, unexpected, mismatched)


def load_model_weights(model: nn.Module,
                       weights: Union[PathLike, Mapping[str, torch.Tensor]],
                       strict: bool = True) -> LoadResult:
    """Load weights into a model, strictly by default.

    Args:
        model (nn.Module): The model (e.g. a built ``Llava``).
        weights (str | PathLike | Mapping): A path for :func:`load_weights`, or a state dict.
        strict (bool): Raise on any missing key, unexpected key or shape mismatch, before
            anything is loaded. With False, load the keys whose shapes match and return the
            rest.

    Returns:
        LoadResult: ``(missing, unexpected, mismatched)``; all empty after a strict load.

    Raises:
        StateDictMismatchError: With ``strict``, listing every key that does not fit.
    """
    source = 'the weights'
    if not isinstance(weights, Mapping):
        source = str(weights)
        weights = load_weights(weights, progress=True)
    state_dict = drop_silent_keys(weights)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    result = compare_state_dict(expected, state_dict)
    if strict and any(result):
        raise StateDictMismatchError(*result, source=source)
    bad = {k for k, _, _ in result.mismatched}
    loadable = {k: v for k, v in state_dict.items() if k in expected and k not in bad}
    model.load_state_dict(loadable, strict=strict)
    return result


def load_partial_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                         source: str = 'the weights',
                         require_trainable: bool = False) -> List[str]:
    """Load weights that may cover only part of the model.

    Args:
        model (nn.Module): The (unwrapped) model.
        state_dict (Mapping): The tensors.
        source (str): Named in errors.
        require_trainable (bool): Every trainable parameter must be given (resume: the
            checkpoint holds at least what trained).

    Returns:
        list[str]: The model keys the weights did not give.

    Raises:
        StateDictMismatchError: Keys the model does not have, wrong shapes, or (with
            ``require_trainable``) trainable parameters missing.
    """
    from mmllava.models.peft import to_lora_keys
    # Base-layout weights (e.g. the pretrained LLM) load into a LoRA-wrapped LLM too.
    state_dict = to_lora_keys(model, drop_silent_keys(state_dict))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected, mismatched = compare_state_dict(expected, state_dict)
    bad_missing = []
    if require_trainable:
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        bad_missing = [k for k in missing if k in trainable]
    if unexpected or mismatched or bad_missing:
        raise StateDictMismatchError(bad_missing, unexpected, mismatched, source=source)
    model.load_state_dict(dict(state_dict), strict=False)
    return missing


def summarize_missing(model: nn.Module, missing: Sequence[str]) -> str:
    """What keeping ``missing`` at their initialization means: frozen or trainable, counted."""
    params = dict(model.named_parameters())
    frozen = [k for k in missing if k in params and not params[k].requires_grad]
    trainable = [k for k in missing if k in params and params[k].requires_grad]
    parts = []
    if frozen:
        parts.append(f'{len(frozen)} FROZEN parameters keep their random initialization '
                     f'(e.g. {frozen[:3]}): fine for toy runs, a mistake for real ones')
    if trainable:
        parts.append(f'{len(trainable)} trainable parameters start from their '
                     f'initialization (e.g. {trainable[:3]})')
    return '; '.join(parts)


def load_partial_files(model: nn.Module, paths: Sequence[PathLike], progress: bool = False,
                       log=None, loaded: Optional[Mapping[str, StateDict]] = None) -> List[str]:
    """Load weight files in order into ``model``, each covering part of it (later files win).

    Args:
        model (nn.Module): The (unwrapped) model.
        paths: The files (or folders), e.g. a converted base, then a stage's trainable weights.
        progress (bool): Show a progress bar while reading.
        log (callable, optional): Told ``Loaded N tensors from PATH`` per file.
        loaded (Mapping, optional): Tensors already read, by path (not read again).

    Returns:
        list[str]: The model keys no file gave.

    Raises:
        StateDictMismatchError: A file's keys the model lacks or of the wrong shape.
    """
    given = set()
    for path in paths:
        state = (loaded or {}).get(str(path))
        if state is None:
            state = load_weights(path, progress=progress)
        missing = load_partial_weights(model, state, source=str(path))
        given |= set(model.state_dict()) - set(missing)
        if log is not None:
            log(f'Loaded {len(state)} tensors from {path}')
    return [k for k in model.state_dict() if k not in given]


def load_over_bases(model: nn.Module, weights: PathLike, bases=None) -> None:
    """Load ``weights`` strictly, or on top of ``bases`` (a config's ``load_base``).

    The one rule trained weights are loaded by for inference and testing. A training stage's
    checkpoints hold only what trained (projector, adapters); ``load_base`` names the rest.
    Together they must cover every parameter, or nothing loads silently: the uncovered keys
    are named. A complete checkpoint (every parameter, e.g. a from-scratch model whose config
    names its previous stage as ``load_base``) needs no base and loads strictly.

    Raises:
        StateDictMismatchError: Keys left uncovered, unknown or of the wrong shape.
    """
    if not bases:
        load_model_weights(model, weights, strict=True)
        return
    state = load_weights(weights)
    if set(model.state_dict()) <= set(state):
        load_model_weights(model, state, strict=True)
        return
    files = [bases] if isinstance(bases, (str, os.PathLike)) else list(bases)
    uncovered = load_partial_files(model, files + [weights], loaded={str(weights): state})
    if uncovered:
        raise StateDictMismatchError(sorted(uncovered), [], [],
                                     source=f'{weights} together with load_base {files}')
