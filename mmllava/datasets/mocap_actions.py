"""MoCap-Actions: the class list and the question of the human action benchmark.

The benchmark renders the 15 DeepMimic motion-capture clips of a humanoid that pybullet ships
into :data:`CLASS_NAMES` (15 classes), two of them time-reversed pairs that no single frame and
no unordered set of frames can separate: "walking backward" is the walk clip played in reverse,
"lying down" is a getup clip played in reverse. A model has to use frame order to tell them
apart.

This module holds only what training, evaluation and inference need: the classes (label ``i``
is ``CLASS_NAMES[i]``) and the closed-set question. The renderer that writes the benchmark
(motion data, camera, splits, videos, lists and LLaVA JSON) is a tool, not a runtime
dependency: it lives in ``tools/dataset_converters/mocap_actions/``, behind
``tools/dataset_converters/render_mocap_actions.py``.
"""
import dataclasses
from typing import Tuple


@dataclasses.dataclass(frozen=True)
class ActionClass:
    """One action class: its name, the motions it draws from and whether they play reversed."""
    name: str
    motions: Tuple[str, ...]
    reverse: bool = False


CLASSES = (
    ActionClass('walking', ('walk', )),
    ActionClass('walking backward', ('walk', ), reverse=True),
    ActionClass('running', ('run', )),
    ActionClass('jumping', ('jump', )),
    ActionClass('punching', ('punch', )),
    ActionClass('kicking', ('kick', )),
    ActionClass('doing a cartwheel', ('cartwheel', )),
    ActionClass('crawling', ('crawl', )),
    ActionClass('rolling', ('roll', )),
    ActionClass('spinning', ('spin', )),
    ActionClass('doing a spin kick', ('spinkick', )),
    ActionClass('doing a backflip', ('backflip', )),
    ActionClass('dancing', ('dance_a', 'dance_b')),
    ActionClass('getting up', ('getup_faceup', 'getup_facedown')),
    ActionClass('lying down', ('getup_faceup', 'getup_facedown'), reverse=True),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
# The closed-set question; the model's default question for this benchmark.
MOCAP_ACTION_QUESTION = ('What is the person doing? Answer with one of: ' + ', '.join(CLASS_NAMES)
                         + '.')
