"""An mmllava config + weights -> a llava-hf folder that transformers loads offline."""
import os
import os.path as osp
import shutil
from typing import Dict, Optional, Union

import torch
from mmengine.config import Config

from mmllava.engine.checkpoint import (
    StateDictMismatchError,
    compare_state_dict,
    drop_silent_keys,
    load_weights,
    save_weights,
)
from mmllava.structures import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER

from .arch import arch_from_mmllava_config
from .config_writer import tokenizer_path_of
from .keymaps import mmllava_to_hf
from .to_mmllava import expected_shapes
from .tokenizer import load_hf_tokenizer, tokenizer_folder

IMAGE_TOKEN = IMAGE_PLACEHOLDER  # llava-hf's image token is the placeholder's text
VIDEO_TOKEN = VIDEO_PLACEHOLDER
PAD_TOKEN = '<pad>'
PAD_MULTIPLE = 64  # llava-hf pads the vocabulary rows to a multiple of 64
_RESIZE_STEPS = ('CLIPResizeCrop', 'ResizeSquare')


def _prepare_tokenizer(tok, rows: int):
    """Add ``<image>`` (and ``<pad>`` if none) as llava-hf does; returns (tok, image id)."""
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
        if tok.pad_token is None:
            tok.add_special_tokens({'pad_token': PAD_TOKEN})
    elif tok.pad_token is None and PAD_TOKEN in tok.get_vocab():
        tok.pad_token = PAD_TOKEN
    return tok, tok.convert_tokens_to_ids(IMAGE_TOKEN)


def pad_vocab_rows(state_dict: Dict[str, torch.Tensor], min_rows: int,
                   multiple: int = PAD_MULTIPLE) -> int:
    """Grow the embedding and LM head rows to hold ``min_rows`` ids, rounded up to ``multiple``.

    New rows are the mean of the existing ones (as llava-hf's conversion, without its noise):
    a mean LM-head row scores the mean logit, so it never becomes the greedy choice. Nothing
    changes when the rows suffice (a llava-hf source round-trips bit-identically).

    Returns:
        int: The number of rows afterwards.
    """
    keys = [k for k in ('language_model.model.embed_tokens.weight',
                        'language_model.lm_head.weight') if k in state_dict]
    rows = state_dict[keys[0]].shape[0]
    if rows >= min_rows:
        return rows
    new_rows = -(-min_rows // multiple) * multiple
    for key in keys:
        w = state_dict[key]
        mean = w.float().mean(0, keepdim=True).to(w.dtype)
        state_dict[key] = torch.cat([w, mean.expand(new_rows - rows, -1)], 0)
    return new_rows


def _image_size(cfg: Config, default: int) -> int:
    size = [default]

    def visit(obj):
        if isinstance(obj, dict):
            if obj.get('type') in _RESIZE_STEPS and 'size' in obj:
                size[0] = obj['size']
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                visit(v)
    visit(cfg.to_dict().get('test_pipeline', []))
    return size[0]


_HF_CLASSES = {'llava': ('LlavaConfig', 'LlavaForConditionalGeneration'),
               'llava_next': ('LlavaNextConfig', 'LlavaNextForConditionalGeneration'),
               'llava_next_video': ('LlavaNextVideoConfig',
                                    'LlavaNextVideoForConditionalGeneration'),
               'llava_onevision': ('LlavaOnevisionConfig',
                                   'LlavaOnevisionForConditionalGeneration')}


def _hf_config(arch: dict, rows: int, pad_id: int, image_id: int, video_id: Optional[int]):
    """The llava-hf config of ``arch``'s family."""
    import transformers
    llm = dict(arch['llm'])
    model_type = llm.pop('model_type')
    llm.update(vocab_size=rows, pad_token_id=pad_id)
    vision = dict(arch['vision'])
    siglip = arch.get('vision_type') == 'siglip'
    strategy = {'patch': 'default', 'cls_patch': 'full', 'full': 'full'}[arch['select_feature']]
    grid = vision['image_size'] // vision['patch_size']
    family = arch['family']
    config_cls, model_cls = _HF_CLASSES[family]
    kwargs = dict(
        vision_config=dict(model_type='siglip_vision_model' if siglip else 'clip_vision_model',
                           **vision),
        text_config=dict(model_type=model_type, **llm), image_token_id=image_id,
        projector_hidden_act='gelu', vision_feature_layer=arch['select_layer'],
        vision_feature_select_strategy=strategy, multimodal_projector_bias=True,
        tie_word_embeddings=llm.get('tie_word_embeddings', False))
    if family == 'llava':
        kwargs['image_seq_length'] = grid * grid + (strategy == 'full')
    else:
        anyres = arch['anyres']
        kwargs['image_grid_pinpoints'] = [list(p) for p in anyres['image_grid_pinpoints']]
    if family == 'llava_next_video':
        pooling = arch['video_pooling']
        kind = pooling['type'] if isinstance(pooling, dict) else pooling
        kwargs.update(video_token_id=video_id, spatial_pool_stride=2, spatial_pool_mode=(
            'max' if 'Max' in kind or kind == 'maxpool2x2' else 'average'))
    if family == 'llava_onevision':
        kwargs['video_token_id'] = video_id
        if arch['anyres'].get('max_num_tiles') is not None:
            kwargs['vision_aspect_ratio'] = f"anyres_max_{arch['anyres']['max_num_tiles']}"
    hf_config = getattr(transformers, config_cls)(**kwargs)
    hf_config.architectures = [model_cls]
    return hf_config


def _image_processor(arch: dict, size: int, tok, hf_config):
    """The processor (LLaVA, LLaVA-1.6) or image processor (the video families, whose video
    processors need torchvision) a llava-hf folder carries."""
    from transformers import CLIPImageProcessor, LlavaNextProcessor, LlavaProcessor
    family = arch['family']
    mean, std = list(arch['image_mean']), list(arch['image_std'])
    strategy = hf_config.vision_feature_select_strategy
    patch = arch['vision']['patch_size']
    if family == 'llava':
        image_processor = CLIPImageProcessor(
            size={'shortest_edge': size}, crop_size={'height': size, 'width': size},
            do_center_crop=True, resample=3, image_mean=mean, image_std=std)
        return LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                              vision_feature_select_strategy=strategy,
                              num_additional_image_tokens=1)
    pinpoints = hf_config.image_grid_pinpoints
    if family == 'llava_onevision':
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
            LlavaOnevisionImageProcessorPil,
        )
        return LlavaOnevisionImageProcessorPil(size={'height': size, 'width': size},
                                               image_grid_pinpoints=pinpoints,
                                               image_mean=mean, image_std=std)
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )
    image_processor = LlavaNextImageProcessorPil(
        size={'shortest_edge': size}, crop_size={'height': size, 'width': size},
        image_grid_pinpoints=pinpoints, image_mean=mean, image_std=std)
    if family == 'llava_next_video':
        return image_processor
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch,
                              vision_feature_select_strategy=strategy,
                              num_additional_image_tokens=1)


def export_to_hf(config: Union[str, Config], weights: str, out_dir: str,
                 tokenizer: Optional[str] = None, verbose: bool = True) -> Dict[str, object]:
    """Write an mmllava LLaVA as a classic llava-hf folder.

    ``out_dir`` receives ``config.json`` (``LlavaConfig``), ``model.safetensors`` (classic
    ``language_model.*`` / ``multi_modal_projector.*`` / ``vision_tower.vision_model.*``
    keys, read by transformers 4.x and 5.x), ``generation_config.json``, the tokenizer files
    (and ``tokenizer.model``) and a ``LlavaProcessor`` (``CLIPImageProcessor`` sized like the
    model's pipeline, ``patch_size``, ``vision_feature_select_strategy``,
    ``num_additional_image_tokens=1``). A tokenizer without ``<image>`` gets ``<image>`` and
    ``<pad>`` appended, and the vocabulary rows grow to hold them (see
    :func:`pad_vocab_rows`); a tokenizer that has them changes nothing.

    Args:
        config (str | Config): The mmllava config.
        weights (str): The mmllava weights (file or folder).
        out_dir (str): The output folder.
        tokenizer (str, optional): Tokenizer folder or ``tokenizer.model``; defaults to the
            one the config names, else the weights' folder.
        verbose (bool): Print what was written.

    Returns:
        dict: ``files`` written, ``image_token_id``, ``vocab_rows``.
    """
    from transformers import GenerationConfig
    config_path = config if isinstance(config, str) else None
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    arch = arch_from_mmllava_config(cfg.model)
    if arch['projector_type'] != 'mlp2x_gelu':
        raise ValueError(f"llava-hf's LLaVA classes have a 2-layer gelu projector; this "
                         f"model's is {arch['projector_type']!r}")
    state_dict = drop_silent_keys(load_weights(weights, progress=True))
    result = compare_state_dict(expected_shapes(cfg.to_dict()['model']), state_dict)
    if any(result):
        raise StateDictMismatchError(*result, source=str(weights))

    tok_dir = (tokenizer_folder(tokenizer) or tokenizer_folder(tokenizer_path_of(
        cfg.model, config_path)) or osp.dirname(osp.abspath(weights)))
    hf_sd = mmllava_to_hf(state_dict)
    rows = hf_sd['language_model.model.embed_tokens.weight'].shape[0]
    tok, image_token_id = _prepare_tokenizer(load_hf_tokenizer(tok_dir), rows)
    video_token_id = None
    if arch['family'] in ('llava_next_video', 'llava_onevision'):
        if VIDEO_TOKEN not in tok.get_vocab():
            tok.add_tokens([VIDEO_TOKEN], special_tokens=True)
        video_token_id = tok.convert_tokens_to_ids(VIDEO_TOKEN)
    rows = pad_vocab_rows(hf_sd, len(tok))
    hf_config = _hf_config(arch, rows, tok.pad_token_id, image_token_id, video_token_id)
    os.makedirs(out_dir, exist_ok=True)
    hf_config.save_pretrained(out_dir)
    save_weights(hf_sd, osp.join(out_dir, 'model.safetensors'))
    llm = arch['llm']
    GenerationConfig(bos_token_id=llm.get('bos_token_id'), eos_token_id=llm.get('eos_token_id'),
                     pad_token_id=tok.pad_token_id).save_pretrained(out_dir)

    processor = _image_processor(arch, _image_size(cfg, arch['vision']['image_size']), tok,
                                 hf_config)
    processor.save_pretrained(out_dir)
    if not hasattr(processor, 'tokenizer'):
        tok.save_pretrained(out_dir)
    if osp.isfile(osp.join(tok_dir, 'tokenizer.model')):
        shutil.copyfile(osp.join(tok_dir, 'tokenizer.model'), osp.join(out_dir, 'tokenizer.model'))
    files = sorted(os.listdir(out_dir))
    if verbose:
        print(f'Wrote {out_dir} ({arch["family"]}, llava-hf classic layout, {len(hf_sd)} '
              f'tensors, {rows} vocab rows, <image> = {image_token_id}): {", ".join(files)}')
    return dict(files=[osp.join(out_dir, f) for f in files], image_token_id=image_token_id,
                vocab_rows=rows)
