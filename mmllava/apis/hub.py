"""The model zoo: names, configs and weights from ``model-index.yml``; nothing downloaded."""
import fnmatch
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def mim_root() -> Path:
    """Where ``model-index.yml``, ``configs/`` and shipped weights live for this install: the
    source checkout (an editable install), else the copy a wheel carries in ``mmllava/.mim``."""
    checkout = PACKAGE_ROOT.parent
    if (checkout / 'model-index.yml').exists() and (checkout / 'configs').is_dir():
        return checkout
    return PACKAGE_ROOT / '.mim'


def weights_home() -> Path:
    """Where converted zoo weights are looked for: ``$MMLLAVA_HOME`` or ``~/.cache/mmllava``."""
    return Path(os.environ.get('MMLLAVA_HOME', Path.home() / '.cache' / 'mmllava'))


class ModelHub:
    """Reads ``model-index.yml`` (and the metafiles it imports) once, by model name."""

    _models: Optional[Dict[str, dict]] = None

    @classmethod
    def _load(cls) -> Dict[str, dict]:
        if cls._models is None:
            root = mim_root()
            index = yaml.safe_load((root / 'model-index.yml').read_text())
            models = {}
            for metafile in index.get('Import', []):
                meta = yaml.safe_load((root / metafile).read_text())
                for entry in meta.get('Models', []):
                    models[entry['Name'].lower()] = entry
            cls._models = models
        return cls._models

    @classmethod
    def has(cls, name: str) -> bool:
        return name.lower() in cls._load()

    @classmethod
    def get(cls, name: str) -> dict:
        """The metafile entry of ``name``; a ValueError lists close names if unknown."""
        models = cls._load()
        if name.lower() not in models:
            close = [n for n in models if name.lower().split('_')[0] in n]
            raise ValueError(f'Unknown model {name!r}. Known models: {sorted(models)}'
                             + (f'; did you mean one of {close}?' if close else ''))
        return models[name.lower()]

    @classmethod
    def config_path(cls, name: str) -> Path:
        return mim_root() / cls.get(name)['Config']

    @classmethod
    def converted_from(cls, name: str) -> dict:
        """The released checkpoint a zoo model is converted from (``{}`` for our recipes)."""
        return dict((cls.get(name).get('Metadata') or {}).get('Converted From') or {})

    @classmethod
    def weights_path(cls, name: str) -> Path:
        """Resolve the weights of a zoo model, or explain how to get them.

        Relative ``Weights`` paths are looked up in the package (weights we ship) and then in
        :func:`weights_home` (weights users convert or train), by default
        ``$MMLLAVA_HOME/<name>/model.safetensors``.
        """
        entry = cls.get(name)
        weights = Path(entry.get('Weights') or f'{entry["Name"]}/model.safetensors')
        candidates = [weights] if weights.is_absolute() else [mim_root() / weights,
                                                               weights_home() / weights]
        for path in candidates:
            if path.exists():
                return path
        source = cls.converted_from(name)
        target = weights_home() / entry['Name']
        looked = ', '.join(str(p) for p in candidates)
        if source:
            hint = (f" Get the original weights ({source.get('Weights')}, or "
                    f"{source.get('llava-hf', 'the llava-hf copy')}) on a machine with hub "
                    f'access, then convert them: `python tools/model_converters/'
                    f'llava_to_mmllava.py SRC_DIR {target}` (add --vision-tower CLIP_DIR for '
                    'original LLaVA checkpoints).')
        else:
            config = entry['Config']
            work = f'work_dirs/{Path(config).stem}'
            hint = (f' No one ships them: train its recipe, `python tools/train.py {config}` '
                    f'(on 8 GPUs `bash tools/dist_train.sh {config} 8`; base weights and data: '
                    f'{Path(config).parent}/README.md), then write the trained model: '
                    f'`python tools/model_converters/merge_lora.py {config} '
                    f'{work}/best_*.safetensors {target}/model.safetensors --no-merge`.')
        raise FileNotFoundError(f'The weights of {name!r} are not on disk (looked in: {looked}). '
                                f'Nothing is downloaded at run time.{hint}')

    @classmethod
    def config_for(cls, name: str, weights: Optional[Path] = None):
        """The config a zoo model builds from: the ``config.py`` beside its converted weights
        (it describes them: e.g. llava-hf's 32064 vocabulary rows), else the zoo config.

        Where the two differ in more than what the vocabulary fixes (``vocab_size``, the pad
        ids, the tokenizer), a warning names the differing fields.

        Returns:
            Config: The config to build.
        """
        from mmengine.config import Config
        zoo = Config.fromfile(cls.config_path(name))
        folder_cfg = None if weights is None else Path(weights).parent / 'config.py'
        if folder_cfg is None or not folder_cfg.is_file():
            return zoo
        cfg = Config.fromfile(str(folder_cfg))
        differences = config_differences(zoo.to_dict(), cfg.to_dict())
        if differences:
            listed = '; '.join(f'{key}: zoo {a!r}, folder {b!r}' for key, a, b in differences)
            warnings.warn(f'{folder_cfg} differs from the zoo config of {name!r} '
                          f'({cls.get(name)["Config"]}) in {len(differences)} field(s): '
                          f'{listed}. The folder\'s config.py is used: it describes its weights.',
                          stacklevel=3)
        return cfg


# Fields that follow the vocabulary of the converted weights, not the architecture.
VOCAB_FIELDS = ('model.llm.config.vocab_size', 'model.llm.config.pad_token_id',
                'model.data_preprocessor.pad_token_id', 'model.tokenizer')
# transformers' bookkeeping in a normalized config.
_HF_BOOKKEEPING = ('transformers_version', '_name_or_path', 'architectures', 'dtype',
                   'torch_dtype', 'output_attentions', 'output_hidden_states', 'return_dict')


def _normalized(cfg: dict) -> dict:
    """A config's ``model`` and ``test_pipeline`` with every default filled in: the HF
    configs through their transformers classes, registered modules through their
    signatures; flattened to dotted keys."""
    import inspect

    from transformers import AutoConfig, CLIPVisionConfig

    from mmllava.registry import MODELS
    from mmllava.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    def fill(node, key=''):
        if isinstance(node, dict):
            node = {k: fill(v, f'{key}.{k}') for k, v in node.items()}
            if key.endswith('llm.config') and 'model_type' in node:
                extra = {k: v for k, v in node.items() if k != 'model_type'}
                node = AutoConfig.for_model(node['model_type'], **extra).to_dict()
            elif key.endswith('vision_encoder.config'):
                node = CLIPVisionConfig(**node).to_dict()
            elif isinstance(node.get('type'), str) and MODELS.get(node['type']) is not None:
                target = MODELS.get(node['type'])
                params = inspect.signature(target).parameters
                for name, p in params.items():
                    if p.default is not inspect.Parameter.empty and name not in node:
                        node[name] = p.default
            return {k: v for k, v in node.items() if k not in _HF_BOOKKEEPING}
        if isinstance(node, (list, tuple)):
            return [fill(v, key) for v in node]
        return node

    flat = {}

    def flatten(node, key):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                flatten(v, f'{key}.{k}')
        elif isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
            for i, v in enumerate(node):  # pipelines: one key per step's field
                flatten(v, f'{key}.{i}')
        else:
            flat[key] = node

    flatten(fill(cfg.get('model') or {}, 'model'), 'model')
    flatten(cfg.get('test_pipeline'), 'test_pipeline')
    return flat


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def config_differences(zoo: dict, folder: dict) -> List[tuple]:
    """``(dotted key, zoo value, folder value)`` where a converted folder's config differs
    from the zoo config, beyond :data:`VOCAB_FIELDS` (see :meth:`ModelHub.config_for`)."""
    a, b = _normalized(zoo), _normalized(folder)
    out = []
    for key in sorted(set(a) | set(b)):
        if any(key == f or key.startswith(f + '.') for f in VOCAB_FIELDS):
            continue
        if not _same(a.get(key), b.get(key)):
            out.append((key, a.get(key), b.get(key)))
    return out


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Names of the zoo models, optionally filtered by a wildcard pattern.

    Args:
        pattern (str, optional): ``fnmatch`` pattern, e.g. ``'llava-7b*'``; a pattern without
            wildcards matches names containing it.

    Returns:
        list[str]: Sorted model names.
    """
    names = sorted(entry['Name'] for entry in ModelHub._load().values())
    if pattern is None:
        return names
    if not any(c in pattern for c in '*?['):
        pattern = f'*{pattern}*'
    return [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
