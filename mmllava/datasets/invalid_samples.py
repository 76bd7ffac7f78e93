"""Test-mode misses: samples whose image or clip cannot be read are scored, not fatal.

Real evaluation sets hold broken files (public Kinetics-400 copies have thousands of missing or
undecodable clips). In test mode a sample whose visual is missing, empty, truncated or
undecodable does not stop the run: the dataset returns a *stub* instead, the sample packed
by the pipeline's own :class:`~mmllava.datasets.transforms.PackLlavaInputs` with one token id,
no visual, the sample's metainfo and ground truth, and metainfo ``invalid_sample`` = a one-line
reason naming the file. The model answers nothing for such a row (``Llava.predict``), every
metric counts it as a miss and reports ``{prefix}/num_invalid``, and ``tools/test.py`` lists
them in ``WORK_DIR/invalid_samples.txt``. ``fail_on_invalid=True`` (a dataset argument) makes
the first such sample raise instead, with the error naming the file and the reason.

Only errors about a sample's data become misses: a ``ValueError`` or ``OSError`` (missing file,
unreadable image or video) raised by a visual-loading transform (:data:`VISUAL_LOADERS`), or a
file found missing at init. Everything else raises as before: errors of other transforms (a
prompt over ``max_length``), ``TypeError`` and other bugs, malformed annotation files.
"""
from typing import Any, Optional

from mmengine.dataset import Compose

from .transforms.formatting import PackLlavaInputs
from .transforms.video import LoadVisuals

INVALID_SAMPLE = 'invalid_sample'  # the metainfo key of a miss: its reason
# Transforms whose ValueError / OSError means "this sample's visual cannot be read".
VISUAL_LOADERS = (LoadVisuals, )  # LoadImages and LoadVideo included
# Token id of a stub (never run: the model skips invalid rows).
STUB_TOKEN_ID = 0


def one_line(text: str) -> str:
    """``text`` on one line (reasons go one per line to ``invalid_samples.txt``)."""
    return ' '.join(str(text).splitlines()).strip()


def is_visual_error(error: Optional[BaseException]) -> bool:
    """Whether ``error``, or one it was raised from, came from reading a sample's visual."""
    seen = set()
    while error is not None and id(error) not in seen:
        if getattr(error, 'visual_error', False):
            return True
        seen.add(id(error))
        error = error.__cause__
    return False


class LlavaCompose(Compose):
    """mmengine's ``Compose``: the pipeline type of mmllava's datasets.

    The visual loaders (:data:`VISUAL_LOADERS`) mark the errors of reading a file with
    ``visual_error = True`` (same type, same message), so that the dataset can tell an
    unreadable file from a failing transform (:func:`is_visual_error`).
    """


def invalid_stub(pipeline: Compose, info: dict, reason: str) -> Optional[dict]:
    """The packed stub of a sample whose visual cannot be read (see the module doc).

    Args:
        pipeline (Compose): The dataset's pipeline; its ``PackLlavaInputs`` packs the stub.
        info (dict): The sample's info dict (``get_data_info``), before any transform.
        reason (str): Why it is invalid (one line, naming the file).

    Returns:
        dict | None: ``dict(inputs=..., data_samples=...)`` as a good sample has, with
        ``input_ids`` one token, no ``images``/``visual_frames``, and metainfo
        ``invalid_sample``; ``None`` when the pipeline has no ``PackLlavaInputs``.
    """
    pack = next((t for t in getattr(pipeline, 'transforms', ())
                 if isinstance(t, PackLlavaInputs)), None)
    if pack is None:
        return None
    reason = one_line(reason)
    data = {k: v for k, v in info.items()
            if k not in ('images', 'visual_frames', 'labels', 'img_paths', 'ori_shapes',
                         'img_shapes', 'image_sizes')}
    data.update(input_ids=[STUB_TOKEN_ID], invalid_sample=reason)
    packed: Any = pack(data)
    # Whatever meta_keys a config gives PackLlavaInputs, the flag must reach the model.
    packed['data_samples'].set_metainfo({INVALID_SAMPLE: reason})
    return packed
