"""The model zoo: names, configs and weights from ``model-index.yml``; nothing downloaded."""
import fnmatch
import os
from pathlib import Path
from typing import Dict, List, Optional

import yaml

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def mim_root() -> Path:
    """Where ``model-index.yml``, ``configs/`` and shipped weights live for this install."""
    mim = PACKAGE_ROOT / '.mim'
    return mim if (mim / 'model-index.yml').exists() else PACKAGE_ROOT.parent


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
    def weights_path(cls, name: str) -> Path:
        """Resolve the weights of a zoo model, or explain how to get them.

        Relative ``Weights`` paths are looked up in the package (weights we ship) and then in
        :func:`weights_home` (weights users convert).
        """
        entry = cls.get(name)
        weights = entry.get('Weights')
        candidates = []
        if weights:
            weights = Path(weights)
            candidates = [weights] if weights.is_absolute() else [mim_root() / weights,
                                                                   weights_home() / weights]
            for path in candidates:
                if path.exists():
                    return path
        source = (entry.get('Metadata') or {}).get('Converted From', {})
        target = weights_home() / entry['Name']
        looked = ', '.join(str(p) for p in candidates) or 'nowhere: the zoo lists no weights'
        hint = ''
        if source:
            hint = (f" Get the original weights ({source.get('Weights')}, or "
                    f"{source.get('llava-hf', 'the llava-hf copy')}) on a machine with hub "
                    f'access, then convert them: `python tools/model_converters/'
                    f'llava_to_mmllava.py SRC_DIR {target}` (add --vision-tower CLIP_DIR for '
                    'original LLaVA checkpoints).')
        raise FileNotFoundError(f'The weights of {name!r} are not on disk (looked in: {looked}). '
                                f'Nothing is downloaded at run time.{hint}')


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
