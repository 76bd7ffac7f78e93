"""Tiny rendered LLaVA data: coloured shapes on 56x56 images, captions and Q&A about them.

For the tiny configs, tests and toy training on a CPU: made deterministically (numpy and PIL
only) in a second or so, a few hundred samples and well under 1 MB of images. Its words are
ones the tiny tokenizer (``resources/tiny-tokenizer``) encodes in few pieces ("color", not
"colour").

Layout written by :func:`make_tiny_llava_data` (also ``tools/dataset_converters/
make_tiny_llava_data.py``)::

    DIR/images/00000.png ...
    DIR/pretrain.json   caption-style LLaVA JSON: "<image>\\nDescribe the image." -> "a red
                        circle on the left"
    DIR/finetune.json   instruction-style LLaVA JSON: multi-turn Q&A about one image, a few
                        text-only and a few two-image samples

Why a dataset that renders on first use (:class:`TinyLlavaDataset`) rather than a generation
flag: the tiny configs then work from a clean checkout with nothing to run first, and any other
``data_root`` (or a complete one) is read exactly as :class:`LlavaInstructDataset` reads it.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log
from PIL import Image, ImageDraw

from mmllava.registry import DATASETS

from .llava_instruct import LlavaInstructDataset

IMAGE_SIZE = 56
BACKGROUND = (235, 235, 235)
SHAPES = ('circle', 'square', 'triangle')
COLORS = {
    'red': (220, 30, 30), 'green': (30, 160, 50), 'blue': (30, 60, 220),
    'yellow': (235, 200, 20), 'purple': (140, 40, 170), 'orange': (245, 130, 20),
}
# Where the shape's centre goes, as fractions of the image side.
POSITIONS = {
    'left': (0.27, 0.5), 'right': (0.73, 0.5), 'top': (0.5, 0.27), 'bottom': (0.5, 0.73),
    'middle': (0.5, 0.5),
}
POSITION_PHRASES = {
    'left': 'on the left', 'right': 'on the right', 'top': 'at the top',
    'bottom': 'at the bottom', 'middle': 'in the middle',
}
SIDES = {'circle': 'none', 'square': 'four', 'triangle': 'three'}
SPLITS = ('pretrain', 'finetune')


def render_shape(shape: str, color: str, position: str, radius: int = 10,
                 jitter: Tuple[int, int] = (0, 0), size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw one shape on a light grey square image.

    Args:
        shape (str): One of :data:`SHAPES`.
        color (str): One of :data:`COLORS`.
        position (str): One of :data:`POSITIONS`.
        radius (int): Half the shape's extent in pixels.
        jitter (tuple[int, int]): Offset of the centre ``(dx, dy)`` in pixels.
        size (int): Image side.

    Returns:
        np.ndarray: ``(size, size, 3)`` uint8 RGB.
    """
    image = Image.new('RGB', (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    fx, fy = POSITIONS[position]
    cx, cy = round(fx * size) + jitter[0], round(fy * size) + jitter[1]
    fill = COLORS[color]
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == 'circle':
        draw.ellipse(box, fill=fill)
    elif shape == 'square':
        draw.rectangle(box, fill=fill)
    elif shape == 'triangle':
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)],
                     fill=fill)
    else:
        raise ValueError(f'Unknown shape {shape!r}; known: {SHAPES}')
    return np.asarray(image)


def _caption(a: dict) -> str:
    article = 'an' if a['color'][0] in 'aeiou' else 'a'
    return f'{article} {a["color"]} {a["shape"]} {POSITION_PHRASES[a["position"]]}'


def _human(value: str) -> dict:
    return {'from': 'human', 'value': value}


def _gpt(value: str) -> dict:
    return {'from': 'gpt', 'value': value}


def _image_qa(a: dict, rng: np.random.RandomState) -> List[dict]:
    pairs = [
        ('What shape is in the image?', f'A {a["shape"]}.'),
        ('What color is it?', f'It is {a["color"]}.'),
        ('Where is it?', f'It is {POSITION_PHRASES[a["position"]]}.'),
    ]
    chosen = [pairs[i] for i in sorted(rng.choice(3, rng.randint(1, 4), replace=False))]
    turns = []
    for k, (q, ans) in enumerate(chosen):
        turns += [_human(f'<image>\n{q}' if k == 0 else q), _gpt(ans)]
    return turns


def _text_qa(rng: np.random.RandomState) -> List[dict]:
    shape = SHAPES[rng.randint(len(SHAPES))]
    kind = rng.randint(3)
    if kind == 0:
        return [_human(f'How many sides does a {shape} have?'),
                _gpt(f'A {shape} has {SIDES[shape]}.')]
    if kind == 1:
        color = list(COLORS)[rng.randint(len(COLORS))]
        return [_human(f'Is {color} a color?'), _gpt('Yes.'),
                _human(f'Is a {shape} a color?'), _gpt('No, it is a shape.')]
    return [_human('Name a shape.'), _gpt(f'A {shape}.')]


def _two_image_qa(a: dict, b: dict) -> List[dict]:
    same = a['color'] == b['color']
    answer = (f'Yes, both are {a["color"]}.' if same else
              f'No. The first is {a["color"]} and the second is {b["color"]}.')
    return [_human('<image>\n<image>\nDo the two shapes have the same color?'), _gpt(answer)]


def make_tiny_llava_data(out_dir: str, num: int = 200, seed: int = 0) -> Dict[str, int]:
    """Render the tiny data set into ``out_dir`` (see the module doc).

    ``num`` images give ``num`` pretrain samples and about ``1.15 * num`` finetune samples
    (one per image, ``num // 10`` text-only and ``num // 20`` two-image ones). The same
    ``num`` and ``seed`` give the same files.

    Returns:
        dict: Counts: ``images``, ``pretrain``, ``finetune``, ``text_only``, ``two_image``.
    """
    if num < 2:
        raise ValueError(f'num must be at least 2, got {num}')
    rng = np.random.RandomState(seed)
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    attrs = []
    for i in range(num):
        a = dict(shape=SHAPES[rng.randint(len(SHAPES))],
                 color=list(COLORS)[rng.randint(len(COLORS))],
                 position=list(POSITIONS)[rng.randint(len(POSITIONS))],
                 file=f'{i:05d}.png')
        pixels = render_shape(a['shape'], a['color'], a['position'],
                              radius=int(rng.randint(8, 12)),
                              jitter=(int(rng.randint(-3, 4)), int(rng.randint(-3, 4))))
        Image.fromarray(pixels).save(osp.join(out_dir, 'images', a['file']), optimize=True)
        attrs.append(a)

    pretrain = [dict(id=f'pretrain-{i:05d}', image=a['file'],
                     conversations=[_human('<image>\nDescribe the image.'), _gpt(_caption(a))])
                for i, a in enumerate(attrs)]
    finetune = [dict(id=f'finetune-{i:05d}', image=a['file'],
                     conversations=_image_qa(a, rng)) for i, a in enumerate(attrs)]
    num_text, num_two = num // 10, num // 20
    finetune += [dict(id=f'text-{k:05d}', conversations=_text_qa(rng)) for k in range(num_text)]
    for k in range(num_two):
        i, j = rng.choice(num, 2, replace=False)
        finetune.append(dict(id=f'pair-{k:05d}', image=[attrs[i]['file'], attrs[j]['file']],
                             conversations=_two_image_qa(attrs[i], attrs[j])))
    order = rng.permutation(len(finetune))
    finetune = [finetune[i] for i in order]
    for name, data in (('pretrain', pretrain), ('finetune', finetune)):
        with open(osp.join(out_dir, f'{name}.json'), 'w', encoding='utf-8') as f:
            json.dump(data, f, indent=1)
    return dict(images=num, pretrain=len(pretrain), finetune=len(finetune),
                text_only=num_text, two_image=num_two)


def ensure_tiny_llava_data(data_root: str, num: int = 200, seed: int = 0) -> bool:
    """Render the tiny data into ``data_root`` if that folder does not exist.

    Rendered into a temporary sibling folder and renamed into place, so that several
    processes (DDP ranks) starting at once never see a half-written folder.

    Returns:
        bool: Whether this call rendered the data.
    """
    if osp.exists(data_root):
        return False
    parent = osp.dirname(osp.abspath(data_root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tiny_llava-', dir=parent)
    try:
        counts = make_tiny_llava_data(tmp, num=num, seed=seed)
        try:
            os.rename(tmp, data_root)
        except OSError:
            if not osp.isdir(data_root):  # not a concurrent render that won the race
                raise
            return False
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    print_log(f'Rendered the tiny LLaVA data into {data_root} ({counts})', logger='current')
    return True


@DATASETS.register_module()
class TinyLlavaDataset(LlavaInstructDataset):
    """The tiny rendered data; rendered into ``data_root`` on first use.

    When ``data_root`` does not exist it is rendered there (:func:`make_tiny_llava_data`,
    with a log line); otherwise nothing is written. Then it is exactly
    :class:`LlavaInstructDataset` over ``{data_root}/{split}.json`` with images in
    ``{data_root}/images``.

    Args:
        data_root (str): The data folder. Defaults to ``'data/tiny_llava'``.
        split (str): ``'pretrain'`` (captions) or ``'finetune'`` (instructions).
        ann_file (str, optional): Overrides ``'{split}.json'``.
        img_prefix (str): Image folder relative to ``data_root``.
        num (int): Images to render when rendering.
        seed (int): Rendering seed.
        render_if_missing (bool): Render into a missing ``data_root``; ``False`` makes a
            missing folder an error (e.g. when pointing the config at real data).
        **kwargs: :class:`LlavaInstructDataset` arguments (``pipeline``, ``skip_invalid``
            ...).
    """

    def __init__(self, data_root: str = 'data/tiny_llava', split: str = 'finetune',
                 ann_file: Optional[str] = None, img_prefix: str = 'images', num: int = 200,
                 seed: int = 0, render_if_missing: bool = True, **kwargs):
        if split not in SPLITS:
            raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
        self.split = split
        if render_if_missing:
            ensure_tiny_llava_data(data_root, num=num, seed=seed)
        super().__init__(ann_file=ann_file or f'{split}.json', data_root=data_root,
                         img_prefix=img_prefix, **kwargs)
