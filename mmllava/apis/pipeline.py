"""The pipeline a model is run with: the config's steps, given the model's tokenizer and counts.

One builder for every way a model meets data outside training: :func:`inference_model`, the
chat API and the server (:func:`build_inference_pipeline`), and ``tools/test.py``
(:func:`fill_pipeline` on the test dataset's steps).
"""
import copy
from typing import List, Optional

import torch
from mmengine.config import Config
from mmengine.dataset import Compose

from mmllava.datasets.label_map import read_label_map

LOADERS = ('LoadImages', 'LoadVisuals', 'LoadVideo')


def fill_pipeline(steps: list, model: torch.nn.Module, any_visuals: bool = False,
                  num_frames: Optional[int] = None, tokenizer=None) -> List[dict]:
    """The steps, completed from the model where the config leaves them out.

    ``TokenizeConversation`` gets the model's tokenizer (its config's, else the built one) and
    image token count, ``AnyresTiles`` the model's ``anyres`` fields it does not set. With
    ``any_visuals`` (inference, where a user may give an image or a clip) the loader becomes
    ``LoadVisuals`` with the model's token count and clip pooling.

    Args:
        steps (list[dict]): Pipeline configs (left unchanged; a completed copy is returned).
        model: A LLaVA.
        any_visuals (bool): Load images and clips alike.
        num_frames (int, optional): Frames per clip for a loader that does not say (else 8).
        tokenizer (optional): A built tokenizer for the steps that name none, used as it is
            (not copied), before the model's config's.

    Raises:
        ValueError: No tokenizer anywhere.
    """
    out = []
    for step in copy.deepcopy(list(steps)):
        if any_visuals and step['type'] in LOADERS:
            step = dict(type='LoadVisuals', num_frames=step.get('num_frames', num_frames or 8),
                        num_image_tokens=step.get('num_image_tokens', model.num_image_tokens),
                        video_pooling=step.get('video_pooling', model.video_pooling))
        elif step['type'] == 'AnyresTiles':
            anyres = getattr(model, 'anyres', None)
            if anyres is None:
                raise ValueError('The pipeline tiles images (AnyresTiles) but the model has no '
                                 'anyres config')
            for key, value in anyres.items():
                step.setdefault(key, value)
        elif step['type'] == 'TokenizeConversation':
            if step.get('tokenizer') is None:
                cfg = getattr(model, 'cfg', None)
                found = tokenizer
                if found is None and cfg is not None:
                    found = cfg.model.get('tokenizer')
                if found is None:
                    found = model.tokenizer
                if found is None:
                    raise ValueError('The model has no tokenizer: set model.tokenizer in the '
                                     'config or pass pretrained weights whose folder holds '
                                     'tokenizer.model or tokenizer.json')
                step['tokenizer'] = found
            step.setdefault('num_image_tokens', model.num_image_tokens)
        out.append(step)
    return out


def build_inference_pipeline(model: torch.nn.Module, cfg: Optional[Config] = None) -> Compose:
    """The model's test pipeline, ready for images and clips in any conversation.

    The pipeline takes a dict with ``messages`` (role/content dicts; contents hold ``<image>`` /
    ``<video>`` placeholders), ``images`` and ``videos`` (sources in placeholder order: paths,
    PIL images, arrays; clips also rawframe folders and (T, H, W, 3) arrays), optionally
    ``sample_id`` and ``answer_candidates`` (answers to rank); :func:`~mmllava.datasets.collate.
    llava_collate` batches its outputs for ``model.data_preprocessor``.

    Args:
        model: A LLaVA (its ``cfg`` holds ``test_pipeline`` unless ``cfg`` is given).
        cfg: The config to read ``test_pipeline`` (and ``num_frames``) from.
    """
    cfg = cfg if cfg is not None else model.cfg
    if cfg.get('test_pipeline') is None:
        raise ValueError('The config has no test_pipeline to run inference with')
    # The built tokenizer: inference runs in this process, no need to build it again.
    return Compose(fill_pipeline(cfg.test_pipeline, model, any_visuals=True,
                                 num_frames=cfg.get('num_frames'), tokenizer=model.tokenizer))


def closed_set_classes(cfg: Config) -> Optional[List[str]]:
    """The classes a closed-set model ranks: its test dataset's label map (None if it has none).

    A label map file is read as the dataset reads it (relative to the dataset's ``data_root``).
    """
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    label_map = dataset.get('label_map')
    if label_map is None or not dataset.get('rank_classes', True):
        return None
    if isinstance(label_map, str):
        import os.path as osp
        root = dataset.get('data_root') or ''
        path = label_map if osp.isabs(label_map) or not root else osp.join(root, label_map)
        try:
            return read_label_map(path)
        except FileNotFoundError:
            raise FileNotFoundError(
                f'test_dataloader.dataset.label_map: {path} not found. A closed-set model ranks '
                'the classes of its test dataset: put the label map there, point label_map at '
                'it, or set test_dataloader.dataset.rank_classes=False to answer by text '
                'only') from None
    names = [str(name) for name in label_map]
    if not names or len(set(names)) != len(names):
        raise ValueError(f'test_dataloader.dataset.label_map: expected distinct class names, '
                         f'got {names}')
    return names
