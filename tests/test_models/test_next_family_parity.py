"""The LLaVA-NeXT family, converted by our tool, answers as transformers does.

Tiny random ``LlavaNextForConditionalGeneration`` (CLIP + LLaMA), ``LlavaNextVideoFor
ConditionalGeneration`` (CLIP + LLaMA, clips pooled on the tower's features) and
``LlavaOnevisionForConditionalGeneration`` (SigLIP + Qwen2, byte-level BPE tokenizer,
``anyres_max_2`` so that the downsampling runs) are saved as llava-hf folders (transformers 5
layout), converted with :func:`mmllava.convert.convert_to_mmllava` and built with
``get_model``. Our pipeline prepares each conversation; transformers gets the same ids (our
placeholders as its ``<image>`` / ``<video>`` ids) and the same pixels, laid out as its
processors lay them out. Greedy ids must be identical and logits within 1e-4. For LLaVA-1.6
images the prompt ids also equal those of transformers' own processor.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from fixtures_next import CLIP, NEXT_PINPOINTS, SIGLIP, SIZES, build_next_family

from mmllava.apis import get_model
from mmllava.apis.chat_inputs import prepare_chat_inputs
from mmllava.convert import convert_to_mmllava

NUM_FRAMES = 6


def _build(family, tmp):
    hf, tok, out = build_next_family(family, tmp)
    ours = get_model(str(out / 'config.py'), pretrained=str(out / 'model.safetensors')).eval()
    ours.cfg.test_pipeline[0]['num_frames'] = NUM_FRAMES  # the zoo's 32 would repeat frames
    return hf, ours, tok, cfg_ids(hf)


def cfg_ids(model):
    cfg = model.config
    return getattr(cfg, 'image_token_index', None), getattr(cfg, 'video_token_index', None)


@pytest.fixture(scope='module', params=['next', 'video', 'onevision'])
def pair(request, tmp_path_factory):
    return request.param, _build(request.param, tmp_path_factory.mktemp(request.param))


def _hf_inputs(inputs, kinds, image_id, video_id):
    """Our prepared batch as transformers' processors would give it."""
    ids = inputs['input_ids'].clone()
    frames = [int(f) for f in inputs['visual_frames']]
    sizes = inputs.get('image_sizes')
    sizes = sizes.tolist() if sizes is not None else [[0, 0]] * len(frames)
    placeholder = ids == -200
    # Runs of placeholders, one per visual, in order (prompts put text between visuals).
    runs, flat = [], placeholder.flatten().tolist()
    for i, on in enumerate(flat):
        if on and (i == 0 or not flat[i - 1] or i % ids.shape[1] == 0):
            runs.append([i, i + 1])
        elif on:
            runs[-1][1] = i + 1
    assert len(runs) == len(kinds)
    flat_ids = ids.flatten()
    for (a, b), kind in zip(runs, kinds):
        flat_ids[a:b] = image_id if kind == 'image' else video_id
    out = dict(input_ids=flat_ids.view_as(ids), attention_mask=inputs['attention_mask'])
    pixels = inputs['pixel_values'].split(frames)
    images = [(p, s) for p, s, k in zip(pixels, sizes, kinds) if k == 'image']
    videos = [p for p, k in zip(pixels, kinds) if k == 'video']
    if images:
        most = max(len(p) for p, _ in images)
        padded = torch.zeros(len(images), most, *images[0][0].shape[1:])
        for i, (p, _) in enumerate(images):
            padded[i, :len(p)] = p
        out['pixel_values'] = padded
        # An image the pipeline did not tile (OneVision's multi-image) keeps its true size.
        out['image_sizes'] = torch.tensor([s if min(s) > 0 else [32, 32] for _, s in images])
        if len(images) > 1 and any(min(s) == 0 for _, s in images):
            out['batch_num_images'] = torch.tensor([len(images)])
    if videos:
        out['pixel_values_videos'] = torch.stack(videos)
    return out


def _check(family, hf, ours, image_id, video_id, messages, images=(), videos=()):
    prepared = prepare_chat_inputs(ours, messages, images=list(images), videos=list(videos))
    inputs = prepared['inputs']
    kinds = [k for k in _kinds(messages)]
    hf_in = _hf_inputs(inputs, kinds, image_id, video_id)
    with torch.no_grad():
        ref = hf(**hf_in).logits
        got = ours(inputs, mode='tensor')
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
    ref_ids = hf.generate(**hf_in, max_new_tokens=6, do_sample=False, eos_token_id=None,
                          pad_token_id=0)[:, hf_in['input_ids'].shape[1]:]
    got_ids = ours.generate(inputs['input_ids'], inputs['attention_mask'],
                            inputs['pixel_values'], inputs['visual_frames'],
                            image_sizes=inputs.get('image_sizes'), max_new_tokens=6,
                            eos_token_id=None)
    assert got_ids.tolist() == ref_ids.tolist()
    assert prepared['prompt'].count('<image>') == len(images)
    assert prepared['prompt'].count('<video>') == len(videos)
    return prepared


def _kinds(messages):
    import re
    text = ''.join(m['content'] for m in messages)
    return ['image' if t == '<image>' else 'video' for t in re.findall(r'<image>|<video>', text)]


def _image(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


def _clip(t, seed=0, size=32):
    return np.random.RandomState(seed).randint(0, 256, (t, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize('size', SIZES)
def test_images_of_several_aspect_ratios(pair, size):
    family, (hf, ours, tok, (image_id, video_id)) = pair
    messages = [dict(role='user', content='<image>\nWhat is the person doing?')]
    _check(family, hf, ours, image_id, video_id, messages, images=[_image(*size)])


@pytest.mark.parametrize('frames', [6, 15])  # sampled to NUM_FRAMES
def test_clips(pair, frames):
    family, (hf, ours, tok, (image_id, video_id)) = pair
    if family == 'next':
        pytest.skip('LLaVA-1.6 has no clip path in transformers')
    messages = [dict(role='user', content='<video>\nWhat is the person doing?')]
    _check(family, hf, ours, image_id, video_id, messages, videos=[_clip(frames)])


def test_image_and_clip_in_one_conversation(pair):
    family, (hf, ours, tok, (image_id, video_id)) = pair
    if family != 'onevision':
        pytest.skip('transformers mixes an image and a clip in one prompt for OneVision')
    messages = [dict(role='user', content='<image>\nthe picture. <video>\nthe clip. what?')]
    _check(family, hf, ours, image_id, video_id, messages, images=[_image(40, 150)],
           videos=[_clip(9, seed=3)])


def test_onevision_several_images_are_not_tiled(pair):
    family, (hf, ours, tok, (image_id, video_id)) = pair
    if family != 'onevision':
        pytest.skip('OneVision only')
    messages = [dict(role='user', content='<image> and <image>\nwhat differs?')]
    images = [_image(32, 32, 1), _image(32, 32, 2)]
    prepared = _check(family, hf, ours, image_id, video_id, messages, images=images)
    # Each image: its 16 tokens and one newline.
    assert int((prepared['inputs']['input_ids'] == -200).sum()) == 2 * (16 + 1)


def test_next_prompt_ids_equal_transformers_processor(pair):
    family, (hf, ours, tok, (image_id, video_id)) = pair
    if family != 'next':
        pytest.skip('the LLaVA-1.6 processor runs without torchvision')
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import (
        LlavaNextImageProcessorPil,
    )
    processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(
            size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32},
            image_grid_pinpoints=NEXT_PINPOINTS),
        tokenizer=tok, patch_size=8, vision_feature_select_strategy='default',
        num_additional_image_tokens=1)
    for size in SIZES:
        image = _image(*size)
        messages = [dict(role='user', content='<image>\nWhat is the person doing?')]
        prepared = prepare_chat_inputs(ours, messages, images=[image])
        theirs = processor(text=prepared['prompt'], images=image, return_tensors='pt')
        ours_ids = prepared['inputs']['input_ids'][0].tolist()
        # Our ids are the original LLaVA's (as for LLaVA-1.5, test_zoo_weights): the text chunk
        # after <image> starts with sentencepiece's "▁", which llava-hf's processor drops; the
        # template writes LLaMA's BOS, which this processor call does not add.
        after = len(ours_ids) - ours_ids[::-1].index(-200)
        assert ours.tokenizer.id_to_token(ours_ids[after]) == '\u2581'
        assert ours_ids[0] == 1
        ours_ids = [image_id if t == -200 else t for t in ours_ids[1:after] + ours_ids[after + 1:]]
        assert ours_ids == theirs['input_ids'][0].tolist(), size
        torch.testing.assert_close(prepared['inputs']['pixel_values'],
                                   theirs['pixel_values'][0], rtol=0, atol=1e-6)


def test_batch_equals_one_at_a_time(pair):
    family, (hf, ours, tok, _) = pair
    from mmllava.apis import inference_model
    images = [_image(40, 150, 4), _image(64, 64, 5)]
    batch = inference_model(ours, images, ['what is this?', 'who is there?'], max_new_tokens=6)
    alone = [inference_model(ours, im, q, max_new_tokens=6)
             for im, q in zip(images, ['what is this?', 'who is there?'])]
    assert [r['pred_answer'] for r in batch] == [r['pred_answer'] for r in alone]
    assert [r['prompt'] for r in batch] == [r['prompt'] for r in alone]


def test_round_trip_to_llava_hf_is_bit_identical(pair, tmp_path):
    family, (hf, ours, tok, _) = pair
    from safetensors.torch import load_file

    from mmllava.convert import export_to_hf
    src = tmp_path / 'src'
    hf.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    convert_to_mmllava(str(src), str(tmp_path / 'mm'), verbose=False)
    export_to_hf(str(tmp_path / 'mm' / 'config.py'), str(tmp_path / 'mm' / 'model.safetensors'),
                 str(tmp_path / 'back'), verbose=False)
    before = load_file(osp.join(src, 'model.safetensors'))
    after = load_file(osp.join(tmp_path / 'back', 'model.safetensors'))
    # Ours writes the classic layout: the tower under vision_tower.vision_model.
    after = {k.replace('vision_tower.vision_model.', 'vision_tower.'): v for k, v in after.items()}
    assert sorted(before) == sorted(after)
    assert all(torch.equal(before[k], after[k]) for k in before)
    import transformers as tf
    cls = type(hf)
    back = cls.from_pretrained(str(tmp_path / 'back'))
    assert type(back.config) is type(hf.config)
    assert isinstance(back, tf.PreTrainedModel)


def test_original_checkpoints_convert_to_the_same_model(pair, tmp_path):
    """The LLaVA-NeXT repository's layout (``llava_qwen`` / ``llava_llama`` with ``mm_*``
    fields, OneVision's pinpoints as a grid range, the tower inside the checkpoint) gives the
    weights and anyres the llava-hf folder gives, and the repository's clip pooling: after the
    projector, the newline where ``mm_newline_position`` puts it."""
    family, (hf, ours, tok, (image_id, video_id)) = pair
    if family == 'next':
        pytest.skip('the video families carry the mm_spatial_pool fields')
    import json

    from safetensors.torch import save_file
    rules = (('model.language_model.', 'model.'), ('lm_head.', 'lm_head.'),
             ('model.multi_modal_projector.linear_1.', 'model.mm_projector.0.'),
             ('model.multi_modal_projector.linear_2.', 'model.mm_projector.2.'),
             ('model.vision_tower.', 'model.vision_tower.vision_tower.vision_model.'),
             ('model.image_newline', 'model.image_newline'))
    sd = {}
    for key, value in hf.state_dict().items():
        ours_rule = next((a, b) for a, b in rules if key.startswith(a))
        sd[ours_rule[1] + key[len(ours_rule[0]):]] = value.contiguous()
    src, tower = tmp_path / 'original', tmp_path / 'tower'
    src.mkdir()
    tower.mkdir()
    save_file(sd, str(src / 'model.safetensors'))
    onevision = family == 'onevision'
    with open(tower / 'config.json', 'w') as f:
        json.dump(dict(SIGLIP) if onevision else dict(CLIP, model_type='clip_vision_model'), f)
    text = hf.config.text_config.to_dict()
    config = {k: text[k] for k in ('hidden_size', 'intermediate_size', 'num_hidden_layers',
                                   'num_attention_heads', 'num_key_value_heads', 'vocab_size',
                                   'max_position_embeddings', 'rms_norm_eps', 'eos_token_id',
                                   'pad_token_id', 'tie_word_embeddings')}
    config.update(mm_vision_tower=str(tower), mm_projector_type='mlp2x_gelu',
                  mm_vision_select_layer=-2, mm_vision_select_feature='patch',
                  mm_patch_merge_type='spatial_unpad', mm_spatial_pool_stride=2,
                  mm_use_im_start_end=False)
    if onevision:
        config.update(model_type='llava_qwen', image_aspect_ratio='anyres_max_2',
                      image_grid_pinpoints='(1x1),...,(3x3)', mm_spatial_pool_mode='bilinear',
                      mm_newline_position='one_token')
    else:
        config.update(model_type='llava_llama', image_aspect_ratio='anyres',
                      image_grid_pinpoints=NEXT_PINPOINTS, mm_spatial_pool_mode='average',
                      mm_newline_position='grid')
    with open(src / 'config.json', 'w') as f:
        json.dump(config, f)
    tok.save_pretrained(str(src))
    out = tmp_path / 'mm'
    convert_to_mmllava(str(src), str(out), verbose=False)
    again = get_model(str(out / 'config.py'), pretrained=str(out / 'model.safetensors')).eval()
    assert again.anyres == ours.anyres
    if onevision:
        assert again.video_pooling.newline == 'one_token'
        assert again.vision_tower.select_layer == -1
    else:  # the repository pools after the projector, unlike transformers' NeXT-Video
        assert type(again.video_pooling).__name__ == 'AvgPool2x2FramePooling'
        assert (again.video_pooling.stage, again.video_pooling.newline) == ('projector', 'grid')
    ours_sd, again_sd = ours.state_dict(), again.state_dict()
    assert sorted(ours_sd) == sorted(again_sd)
    assert all(torch.equal(ours_sd[k], again_sd[k]) for k in ours_sd)
    # The converted model answers a clip (its own pooling and newlines counted right).
    again.cfg.test_pipeline[0]['num_frames'] = NUM_FRAMES
    prepared = prepare_chat_inputs(again, [dict(role='user', content='<video>\nwhat?')],
                                   videos=[_clip(6)])
    with torch.no_grad():
        again(prepared['inputs'], mode='tensor')


def test_zoo_name_builds_from_the_converted_folder(pair, tmp_path, monkeypatch):
    """Converted under a zoo name, the folder's config.py (written over that zoo config: its
    pipeline and template) is what the name builds from; the sizes that differ from the zoo's
    are named in a warning."""
    family, (hf, ours, tok, _) = pair
    if family != 'onevision':
        pytest.skip('one family is enough')
    from fixtures_llava import load_script

    from mmllava.apis import inference_model
    name = 'llava-onevision-qwen2-0.5b-ov_vqa'
    src = tmp_path / 'src'
    hf.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    monkeypatch.setenv('MMLLAVA_HOME', str(tmp_path / 'home'))
    load_script('tools/model_converters/llava_to_mmllava.py').main(
        [str(src), str(tmp_path / 'home' / name)])
    with pytest.warns(UserWarning, match='hidden_size'):
        model = get_model(name, pretrained=True, generation_cfg=dict(max_new_tokens=4))
    assert model.anyres == ours.anyres and model.video_pooling.newline == 'one_token'
    model.cfg.test_pipeline[0]['num_frames'] = NUM_FRAMES
    clip = _clip(6)
    result = inference_model(model, clip, 'what?')
    assert result['prompt'].startswith('<|im_start|>system\nYou are a helpful assistant.')
    assert '<video>' in result['prompt']
    ours.cfg.test_pipeline[0]['num_frames'] = NUM_FRAMES
    assert result['pred_answer'] == inference_model(ours, clip, 'what?',
                                                    max_new_tokens=4)['pred_answer']
