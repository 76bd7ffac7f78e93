"""mmpretrain beside transformers 5: its multimodal package off, its VQA text rules public."""
import importlib
import sys


def patch_mmpretrain_multimodal() -> None:
    """Let ``import mmpretrain.models`` succeed beside transformers 5.

    Why: mmpretrain 1.2.0 imports its BLIP/OFA/LLaVA modules whenever pycocotools and
    transformers are installed, and those modules import symbols that transformers >= 4.52
    moved or removed (``apply_chunking_to_forward``, ``GenerationMixin`` from
    ``modeling_utils`` ...); the import then dies with ``TypeError: NoneType takes no
    arguments``. mmllava provides its own LLaVA, so we switch mmpretrain's multimodal
    package off through its own flag: mmpretrain then registers its documented placeholders
    for those models (they raise an ImportError when built), and every other mmpretrain part
    (backbones, necks, heads, transforms, datasets, metrics) imports and builds as usual.

    Must run before ``mmpretrain.models`` is first imported; a no-op afterwards.
    """
    if 'mmpretrain.models' in sys.modules:
        return
    dependency = importlib.import_module('mmpretrain.utils.dependency')
    dependency.WITH_MULTIMODAL = False


class _BeforeMmpretrainModels:
    """A ``sys.meta_path`` entry that applies :func:`patch_mmpretrain_multimodal` at the first
    ``import mmpretrain.models`` (then steps aside), so ``import mmllava`` need not import
    mmpretrain (seconds) for a tool's ``--help``."""

    def find_spec(self, fullname, path=None, target=None):
        """Patch just before ``mmpretrain.models`` loads; find nothing (the usual finders do)."""
        if fullname == 'mmpretrain.models':
            uninstall_mmpretrain_hook()
            patch_mmpretrain_multimodal()
        return None


def install_mmpretrain_hook() -> None:
    """Patch mmpretrain when its models are first imported (now, if it already is imported)."""
    if 'mmpretrain' in sys.modules:
        patch_mmpretrain_multimodal()
        return
    if not any(isinstance(f, _BeforeMmpretrainModels) for f in sys.meta_path):
        sys.meta_path.insert(0, _BeforeMmpretrainModels())


def uninstall_mmpretrain_hook() -> None:
    """Remove the import hook (it is needed once)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _BeforeMmpretrainModels)]


def vqa_text_rules():
    """The official VQA answer rules as mmpretrain carries them (``processPunctuation``,
    ``processDigitArticle`` of vqaEval.py, verbatim tables of punctuation, number words,
    articles and contractions).

    Why: they are private functions of ``mmpretrain.evaluation.metrics.vqa``; reading them
    here keeps that private import in one place (and one test) should mmpretrain rename them.

    Returns:
        tuple: ``(process_punctuation, process_digit_article)``.
    """
    from mmpretrain.evaluation.metrics import vqa
    return vqa._process_punctuation, vqa._process_digit_article
