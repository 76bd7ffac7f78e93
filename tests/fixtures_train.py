"""Small generated LLaVA training data for the training tests (no downloads, a second to write).

Images are flat colours (56 px, one of eight); each conversation asks for the colour, and the
answer names it. A tiny LLaVA can learn that in a few dozen iterations, and only through its
image features: the text is the same for every sample.
"""
import json
import os.path as osp
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).parents[1]
TOKENIZER = dict(type='SentencePieceTokenizer',
                 model_file=str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model'))
COLOURS = {'red': (220, 30, 30), 'green': (30, 200, 40), 'blue': (30, 40, 220),
           'yellow': (230, 220, 20), 'black': (5, 5, 5), 'white': (250, 250, 250),
           'purple': (140, 30, 160), 'orange': (250, 140, 10)}
NUM_IMAGE_TOKENS = 16  # (56 / 14)^2


def write_colour_data(folder, num_samples: int = 32, template: str = 'vicuna_v1') -> str:
    """Write PNGs and an OpenMMLab-2.0 annotation file; return the annotation path."""
    folder = Path(folder)
    (folder / 'images').mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    data_list = []
    for i in range(num_samples):
        name = names[i % len(names)]
        path = folder / 'images' / f'{i:03d}.png'
        Image.fromarray(np.full((56, 56, 3), COLOURS[name], np.uint8)).save(path)
        if template == 'plain':
            turns = [dict(role='user', content='<image>'),
                     dict(role='assistant', content=f'a {name} picture.')]
        else:
            turns = [dict(role='user', content='<image>\nWhat colour is the image?'),
                     dict(role='assistant', content=f'The image is {name}.')]
        data_list.append(dict(sample_id=i, images=[str(path)], messages=turns))
    ann = folder / f'ann_{template}.json'
    ann.write_text(json.dumps(dict(metainfo={}, data_list=data_list)))
    return str(ann)


def pipeline(template: str = 'vicuna_v1') -> list:
    return [
        dict(type='LoadImages'),
        dict(type='PadToSquare', background=(122, 116, 104)),
        dict(type='CLIPResizeCrop', size=56),
        dict(type='TokenizeConversation', tokenizer=TOKENIZER, template=template,
             num_image_tokens=NUM_IMAGE_TOKENS),
        dict(type='PackLlavaInputs'),
    ]


def dataset_cfg(ann_file: str, template: str = 'vicuna_v1') -> dict:
    return dict(type='mmpretrain.BaseDataset', ann_file=ann_file, data_root=osp.dirname(ann_file),
                data_prefix=dict(), pipeline=pipeline(template), serialize_data=False)


def dataloader_cfg(ann_file: str, template: str = 'vicuna_v1', batch_size: int = 4,
                   shuffle: bool = True) -> dict:
    return dict(batch_size=batch_size, num_workers=0, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=shuffle),
                collate_fn=dict(type='llava_collate'),
                dataset=dataset_cfg(ann_file, template))


def _register_record_hook():
    """A hook that records each rank's losses and final trainable parameters (DDP tests)."""
    import torch
    from mmengine.hooks import Hook
    from mmengine.model import is_model_wrapper

    from mmllava.registry import HOOKS

    @HOOKS.register_module(force=True)
    class RecordRankHook(Hook):
        priority = 'LOWEST'

        def __init__(self):
            self.losses = []

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.losses.append(float(outputs['loss']))

        def after_train(self, runner):
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            params = {n: p.detach().clone() for n, p in model.named_parameters()
                      if p.requires_grad}
            torch.save(dict(losses=self.losses, params=params),
                       osp.join(runner.work_dir, f'rank{runner.rank}.pt'))

    return RecordRankHook


RecordRankHook = _register_record_hook()
