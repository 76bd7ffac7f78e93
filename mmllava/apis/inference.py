"""get_model, inference_model and LlavaInferencer: mmpretrain-style inference."""
import copy
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image
from tqdm import tqdm

from mmllava.datasets.collate import llava_collate
from mmllava.engine.checkpoint import align_vocab_rows, load_over_bases
from mmllava.evaluation.metrics.action import answer_label, normalize_action

from .hub import ModelHub
from .pipeline import build_inference_pipeline, closed_set_classes

ModelType = Union[str, Path, Config, torch.nn.Module]
InputType = Union[str, Path, Image.Image, np.ndarray]

# File suffixes read as clips (PyAV decodes them); everything else given as a file is an image.
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpeg', '.mpg', '.flv',
                  '.wmv', '.3gp', '.ts', '.gif')


ACCEPTED_INPUTS = ('an image (a path, a PIL image or an HxWx3 uint8 array), a clip (a video '
                   'file, a rawframe folder, a .npy file or a TxHxWx3 uint8 array), or a list '
                   'of them')


def load_input(source: InputType, where: str = 'inputs') -> InputType:
    """Check one input and read what needs reading, the same rule for the API and the demos.

    A ``.npy`` file is loaded as the array it holds (an image if HxWx3, a clip if TxHxWx3); every
    other path is left to the pipeline's loaders.

    Raises:
        TypeError: Not a path, a PIL image or an array (``where`` names it).
        ValueError: An array that is not HxWx3 or TxHxWx3, or a ``.npy`` file that is not one.
        FileNotFoundError: A ``.npy`` path that does not exist.
    """
    if isinstance(source, (str, Path)) and str(source).lower().endswith('.npy'):
        if not Path(source).is_file():
            raise FileNotFoundError(f'{where}: {source} does not exist')
        try:
            source = np.load(source, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f'{where}: {source} is not a numpy array file ({e})') from None
    if isinstance(source, np.ndarray):
        if source.ndim not in (3, 4) or source.shape[-1] != 3:
            raise ValueError(f'{where}: an array must be HxWx3 (an image) or TxHxWx3 (a clip), '
                             f'got shape {source.shape}')
        return source
    if not isinstance(source, (str, Path, Image.Image)):
        raise TypeError(f'{where}: expected {ACCEPTED_INPUTS}; got {type(source).__name__}')
    return source


def _check_questions(questions, count: int) -> None:
    if questions is None or isinstance(questions, str):
        return
    if not isinstance(questions, (list, tuple)):
        raise TypeError(f'questions: expected a str, a list of str (one per input) or None, got '
                        f'{type(questions).__name__}')
    bad = [i for i, q in enumerate(questions) if not isinstance(q, str)]
    if bad:
        raise TypeError(f'questions[{bad[0]}]: expected a str, got '
                        f'{type(questions[bad[0]]).__name__}')
    if len(questions) != count:
        raise ValueError(f'{count} inputs but {len(questions)} questions')


def is_video(source) -> bool:
    """Whether an input is a clip: a video file, a rawframe folder or a (T, H, W, 3) array."""
    if isinstance(source, np.ndarray):
        return source.ndim == 4
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES
    return False


def _load_config(name_or_config) -> tuple:
    """Return (Config, zoo name or None)."""
    if isinstance(name_or_config, Config):
        return copy.deepcopy(name_or_config), None
    name = str(name_or_config)
    if ModelHub.has(name):
        return Config.fromfile(ModelHub.config_path(name)), name
    if Path(name).suffix == '.py':
        if not Path(name).exists():
            raise FileNotFoundError(f'Config file {name} does not exist')
        return Config.fromfile(name), None
    ModelHub.get(name)  # raises with the known names


def get_model(name_or_config: Union[str, Path, Config],
              pretrained: Union[bool, str, Path, None] = None,
              device: Union[str, torch.device] = 'cpu',
              load_8bit: bool = False,
              **overrides) -> torch.nn.Module:
    """Build a LLaVA from a zoo name or a config, and load its weights.

    Args:
        name_or_config: A zoo name (see :func:`list_models`), a config file or a Config.
        pretrained: ``True`` loads the zoo weights of a zoo name; a path loads that file
            (safetensors, or a weights-only torch file), on top of the config's
            ``load_base`` files when it names some (checkpoints of training stages hold only
            what trained); ``None``/``False`` keeps the random initialization.
        device: Where to put the model.
        load_8bit: Quantize the LLM's linear layers to dynamic int8 after the weights load
            (CPU only; see :func:`mmllava.models.quantize_llm_int8`). GPU users load 4 bits
            through bitsandbytes instead (docs/quantization.md).
        **overrides: Keys merged into the config's ``model`` (e.g.
            ``generation_cfg=dict(max_new_tokens=16)``, or
            ``llm=dict(torch_dtype='bfloat16')`` to hold a 7B LLM in half the memory).

    Returns:
        The model in eval mode, with ``model.cfg`` set to its config.
    """
    from mmllava.registry import MODELS
    from mmllava.utils import register_all_modules

    register_all_modules()
    if load_8bit and torch.device(device).type != 'cpu':
        raise ValueError(f'load_8bit is int8 for CPU inference, not for {device}: on a GPU, '
                         'load the LLM in 4 bits through bitsandbytes (docs/quantization.md)')
    cfg, zoo_name = _load_config(name_or_config)
    weights = None
    if pretrained is True:
        if zoo_name is None:
            raise ValueError('pretrained=True needs a zoo model name; give the weights path '
                             'for a config')
        weights = ModelHub.weights_path(zoo_name)
        # Converted weights come with the config.py that describes them.
        cfg = ModelHub.config_for(zoo_name, weights)
    elif pretrained:
        weights = Path(pretrained)
        if not weights.exists():
            raise FileNotFoundError(f'Weights file {weights} does not exist')
    if overrides:
        cfg.merge_from_dict(dict(model=overrides))
    if weights is not None:
        # The rows of the weights it loads (llava-hf's 32064 or the original's 32000).
        bases = cfg.get('load_base') or []
        align_vocab_rows(cfg.model, ([bases] if isinstance(bases, (str, Path)) else
                                     list(bases)) + [weights])
    if cfg.model.get('tokenizer') is None and weights is not None:
        # Zoo configs leave the tokenizer to the folder of the converted weights.
        from mmllava.conversation import tokenizer_file
        try:
            cfg.model.tokenizer = tokenizer_file(str(weights if weights.is_dir()
                                                     else weights.parent))
        except FileNotFoundError:
            pass  # inference then says the model has no tokenizer
    if weights is not None:
        # Every parameter is about to be overwritten (strictly), so skip the random init:
        # it costs minutes at 7B. Non-persistent buffers (rotary, positions) still get built.
        from transformers.initialization import no_init_weights
        with no_init_weights():
            model = MODELS.build(cfg.model)
    else:
        model = MODELS.build(cfg.model)
    if weights is not None:
        load_over_bases(model, weights, cfg.get('load_base'))
    model.cfg = cfg
    model.to(device)
    model.eval()
    if load_8bit:
        from mmllava.models.quantize import quantize_llm_int8
        quantize_llm_int8(model)
    return model


def load_model(name_or_config: Union[str, Path], checkpoint: Union[str, Path, None] = None,
               device: Union[str, torch.device] = 'cpu', load_8bit: bool = False,
               decoder: Optional[str] = None, decode_dtype: Optional[str] = None) -> tuple:
    """The rule the demos and the server load MODEL by: a zoo name loads its own weights, a
    config loads ``checkpoint`` or, without one, keeps random weights (with a note printed).
    ``decoder`` and ``decode_dtype`` (``--decoder``, ``--decode-dtype``) go into the model's
    ``generation_cfg`` (see :meth:`mmllava.models.LLaVA.generate`).

    Returns:
        tuple: The model (:func:`get_model`) and whether it has trained weights.

    Raises:
        ValueError: a device this machine lacks (``cuda:0`` without a GPU).
    """
    from mmllava.utils.cli import check_device
    check_device(str(device))  # before any loading: a one-line error for a missing GPU
    pretrained = checkpoint
    if pretrained is None and ModelHub.has(str(name_or_config)):
        pretrained = True
    model = get_model(name_or_config, pretrained=pretrained, device=device, load_8bit=load_8bit)
    if decoder is not None:
        model.generation_cfg['decoder'] = decoder
    if decode_dtype is not None:
        from mmllava.models.decoding import decode_dtype_of
        decode_dtype_of(decode_dtype)  # a bad name fails here, not at the first answer
        model.generation_cfg['decode_dtype'] = decode_dtype
    if pretrained is None:
        print('note: no weights given, so this model answers with random weights', flush=True)
    return model, pretrained is not None


class LlavaInferencer:
    """Answer questions about images with a LLaVA, in batches.

    Args:
        model: A zoo name, a config (path or Config) or a built model.
        pretrained: As in :func:`get_model`.
        device: Where to run.
        batch_size (int): Inputs per forward.
        **overrides: Model config overrides, as in :func:`get_model`.
    """

    def __init__(self, model: ModelType, pretrained: Union[bool, str, Path, None] = None,
                 device: Union[str, torch.device] = 'cpu', batch_size: int = 1, **overrides):
        if isinstance(model, torch.nn.Module):
            if not hasattr(model, 'cfg'):
                raise ValueError('A built model must carry its config as model.cfg '
                                 '(get_model sets it)')
            self.model = model
        else:
            self.model = get_model(model, pretrained=pretrained, device=device, **overrides)
        self.batch_size = batch_size
        self.pipeline = build_inference_pipeline(self.model)
        # A closed-set (action) model ranks the classes of its test dataset.
        self.classes = closed_set_classes(self.model.cfg)
        self._class_index = None if self.classes is None else {
            normalize_action(name): i for i, name in enumerate(self.classes)}


    @property
    def result_key(self) -> str:
        return 'pred_caption' if self.model.task == 'caption' else 'pred_answer'

    def _sample(self, index: int, visual: Optional[InputType], question: str) -> dict:
        content = question
        kind = 'video' if is_video(visual) else 'image'
        if visual is not None and f'<{kind}>' not in question:
            content = f'<{kind}>\n' + question  # LLaVA-1.5 puts the visual first
        visuals = [] if visual is None else [visual]
        sample = dict(sample_id=index, images=visuals if kind == 'image' else [],
                      videos=visuals if kind == 'video' else [],
                      messages=[dict(role='user', content=content)], question=question)
        if self.classes is not None:
            sample['answer_candidates'] = self.classes
        return sample

    def __call__(self, inputs: Union[InputType, Sequence[InputType]],
                 questions: Union[str, Sequence[str], None] = None,
                 batch_size: Optional[int] = None, show_progress: bool = False,
                 **generate_kwargs) -> List[dict]:
        """Run inference.

        Args:
            inputs: An image (path, PIL image, HxWx3 uint8 array), a clip (a video file, a
                rawframe folder or a (T, H, W, 3) uint8 array) or a list of them.
            questions: One question per input (a list for a list); ``None`` uses the model's
                default question.
            batch_size: Overrides the inferencer's batch size.
            show_progress: Show a progress bar over batches.
            **generate_kwargs: transformers ``generate`` keywords (``max_new_tokens``,
                ``num_beams``, ``do_sample`` ...). Greedy by default.

        Returns:
            list[dict]: Per input ``pred_answer`` (or ``pred_caption``) and ``prompt``, the
            exact text given to the LLM with each image written as ``<image>`` (each clip as
            ``<video>``). Closed-set models (whose test dataset has classes) add
            ``pred_scores`` (probabilities over the classes from their likelihoods as
            answers), and ``pred_class``, the answer to read, with its index ``pred_label``:
            the class the generated text names, or, when it names none, the most likely
            (:func:`mmllava.evaluation.metrics.answer_label`), so the two agree whenever the
            text is a class name.
        """
        if inputs is None:
            raise TypeError(f'inputs is None: expected {ACCEPTED_INPUTS}')
        if isinstance(inputs, (list, tuple)):
            if not inputs:
                raise ValueError('inputs is an empty list: give at least one image or clip')
            images = [load_input(x, f'inputs[{i}]') for i, x in enumerate(inputs)]
        else:
            images = [load_input(inputs)]
        _check_questions(questions, len(images))
        if questions is None or isinstance(questions, str):
            question = questions if questions is not None else self.model.default_question
            if question is None:
                raise ValueError('Give a question: this model has no default question')
            questions = [question] * len(images)
        batch_size = batch_size or self.batch_size
        results = []
        starts = range(0, len(images), batch_size)
        for start in tqdm(starts, disable=not show_progress, desc='inference'):
            samples = [
                self.pipeline(self._sample(i, images[i], questions[i]))
                for i in range(start, min(start + batch_size, len(images)))
            ]
            data = self.model.data_preprocessor(llava_collate(samples), False)
            with torch.no_grad():
                outputs = self.model.predict(data['inputs'], data['data_samples'],
                                             **generate_kwargs)
            for out in outputs:
                result = {self.result_key: out.get(self.result_key),
                          'prompt': out.metainfo.get('prompt', out.get('prompt'))}
                if 'pred_label' in out:  # a closed-set (action) model ranked its classes
                    scores = [float(v) for v in out.pred_scores]
                    # The answer: the class the text names, else the ranking's first.
                    result['pred_label'] = answer_label(result[self.result_key], scores,
                                                        self._class_index)
                    result['pred_class'] = self.classes[result['pred_label']]
                    result['pred_scores'] = scores
                results.append(result)
        return results


def inference_model(model: ModelType, inputs: Union[InputType, Sequence[InputType]],
                    questions: Union[str, Sequence[str], None] = None,
                    **generate_kwargs) -> Union[dict, List[dict]]:
    """Answer a question about an image or a clip (or a batch) in one call.

    Args:
        model: A zoo name (its weights loaded as ``pretrained=True``), a config path, or a
            model from :func:`get_model`.
        inputs: An image or a clip (video file, rawframe folder, (T, H, W, 3) array), or a
            list of them (a list means a batch).
        questions: A question, a list of questions (one per image), or ``None`` for the
            model's default question.
        **generate_kwargs: transformers ``generate`` keywords; greedy by default.

    Returns:
        dict | list[dict]: ``pred_answer`` (or ``pred_caption``) and ``prompt`` per input; a
        list when ``inputs`` is a list.
    """
    if isinstance(model, torch.nn.Module):
        inferencer = LlavaInferencer(model)
    elif ModelHub.has(str(model)):
        inferencer = LlavaInferencer(model, pretrained=True)
    else:
        inferencer = LlavaInferencer(model)
    results = inferencer(inputs, questions, **generate_kwargs)
    return results if isinstance(inputs, (list, tuple)) else results[0]


def print_answer(result: dict, write=print) -> str:
    """Print a result's answer the way the demos do, and return it.

    ``answer: <text>``: for a closed-set model, ``pred_class`` (the answer to read; see
    :meth:`LlavaInferencer.__call__`), followed by ``generated: <pred_answer>`` when the
    generated text is not that class's name; else ``pred_answer`` (or ``pred_caption``).
    """
    generated = result.get('pred_answer', result.get('pred_caption'))
    answer = result.get('pred_class', generated)
    write(f'answer: {answer}')
    if answer != generated:
        write(f'generated: {generated}')
    return answer
