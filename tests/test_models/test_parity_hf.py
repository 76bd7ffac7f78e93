"""Converted mmllava models against transformers' LlavaForConditionalGeneration.

One tiny random llava-hf model is saved in every source layout (see tests/fixtures_llava.py)
and converted; each conversion must give transformers' logits, and greedy generation must be
token-identical, one image at a time and as a left-padded batch built by the HF processor.
"""
import os.path as osp

import pytest
import torch
from fixtures_llava import IMAGE_TOKEN_ID, NUM_IMAGE_TOKENS, random_images, shared_build

from mmllava.engine.checkpoint import load_weights
from mmllava.models import IMAGE_TOKEN_INDEX

FORMATS = ('llava-hf', 'llava-hf-v5', 'original', 'mmpretrain')
PROMPTS = ('USER: <image>\nWhat is this? ASSISTANT:',
           'A chat between a curious user and an assistant. USER: <image>\nDescribe the picture '
           'of the people in the street in detail, please. ASSISTANT:',
           'USER: <image>\nHow many? ASSISTANT:')


@pytest.fixture(scope='module')
def built():
    return shared_build()


_MODELS = {}


def load_ours(folder: str):
    """Build the converted model from its own config.py and weights, as users do."""
    if folder not in _MODELS:
        from mmllava.apis import get_model
        _MODELS[folder] = get_model(osp.join(folder, 'config.py'),
                                    pretrained=osp.join(folder, 'model.safetensors'))
    return _MODELS[folder]


def prompt_ids():
    ids = [1, 5, 6, 7] + [IMAGE_TOKEN_INDEX] * NUM_IMAGE_TOKENS + [8, 9, 10, 11]
    return torch.tensor([ids])


def pixel_values(built, seed, n=1):
    """The HF image processor's pixel values for random 30 px images."""
    _, pils = random_images(n, seed=seed)
    return built['processor'].image_processor(pils, return_tensors='pt')['pixel_values']


@pytest.mark.parametrize('fmt', FORMATS)
def test_logits_match_transformers(built, fmt):
    ours = load_ours(built['converted'][fmt])
    hf = built['model']
    pixels = pixel_values(built, seed=0)
    ids = prompt_ids()
    with torch.no_grad():
        want = hf(input_ids=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, IMAGE_TOKEN_ID),
                  pixel_values=pixels).logits
        got = ours(dict(input_ids=ids, pixel_values=pixels), mode='tensor')
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_every_layout_converts_to_the_same_tensors(built):
    ref = load_weights(osp.join(built['converted']['llava-hf'], 'model.safetensors'))
    hf_sd = built['model'].state_dict()
    # An independent check against the reference model's own parameters.
    assert torch.equal(ref['llm.lm_head.weight'], hf_sd['lm_head.weight'])
    assert torch.equal(ref['projector.2.bias'], hf_sd['model.multi_modal_projector.linear_2.bias'])
    assert torch.equal(ref['vision_tower.vision_model.encoder.layers.1.self_attn.k_proj.weight'],
                       hf_sd['model.vision_tower.encoder.layers.1.self_attn.k_proj.weight'])
    for fmt in FORMATS[1:]:
        other = load_weights(osp.join(built['converted'][fmt], 'model.safetensors'))
        assert other.keys() == ref.keys(), fmt
        for key in ref:
            assert torch.equal(other[key], ref[key]), (fmt, key)


def test_greedy_generation_single(built):
    ours = load_ours(built['converted']['llava-hf'])
    hf = built['model']
    pixels = pixel_values(built, seed=1)
    ids = prompt_ids()
    with torch.no_grad():
        want = hf.generate(input_ids=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, IMAGE_TOKEN_ID),
                           pixel_values=pixels, max_new_tokens=12, do_sample=False,
                           eos_token_id=None, pad_token_id=0)[:, ids.shape[1]:]
        got = ours.generate(ids, pixel_values=pixels, max_new_tokens=12, eos_token_id=None)
    assert got.tolist() == want.tolist()


def test_greedy_generation_batch_left_padded(built):
    """Three images, prompts of three lengths: the HF processor's batch against ours."""
    ours = load_ours(built['converted']['llava-hf'])
    hf, processor = built['model'], built['processor']
    images, pils = random_images(3, seed=2)
    processor.tokenizer.padding_side = 'left'
    batch = processor(text=list(PROMPTS), images=pils, return_tensors='pt', padding=True)
    lengths = batch['attention_mask'].sum(1).tolist()
    assert len(set(lengths)) == 3 and (batch['attention_mask'][:, 0] == 0).any()
    with torch.no_grad():
        want = hf.generate(**batch, max_new_tokens=10, do_sample=False, eos_token_id=None,
                           pad_token_id=0)[:, batch['input_ids'].shape[1]:]

    # Ours: the same prompt tokens, unpadded, with the -200 placeholder and uint8 images,
    # batched by our data preprocessor (left padding for prediction).
    samples = []
    for row, mask, image in zip(batch['input_ids'], batch['attention_mask'], images):
        ids = row[mask.bool()]
        assert int((ids == IMAGE_TOKEN_ID).sum()) == NUM_IMAGE_TOKENS
        samples.append(dict(input_ids=ids.masked_fill(ids == IMAGE_TOKEN_ID, IMAGE_TOKEN_INDEX),
                            images=image[None]))
    data = ours.data_preprocessor(dict(inputs=samples), training=False)['inputs']
    torch.testing.assert_close(data['pixel_values'], batch['pixel_values'], atol=1e-6, rtol=0)
    assert data['attention_mask'].tolist() == batch['attention_mask'].tolist()
    got = ours.generate(data['input_ids'], data['attention_mask'], data['pixel_values'],
                        max_new_tokens=10, eos_token_id=None)
    assert got.tolist() == want.tolist()
    # And each row alone gives the same tokens as in the batch.
    for i, sample in enumerate(samples):
        single = ours.generate(sample['input_ids'][None],
                               pixel_values=data['pixel_values'][i:i + 1], max_new_tokens=10,
                               eos_token_id=None)
        assert single[0].tolist() == got[i].tolist()


def test_our_tokenizer_matches_the_hf_processor(built):
    """The converted folder's SentencePiece tokenizer gives the processor's text ids."""
    ours = load_ours(built['converted']['llava-hf'])
    tok = built['processor'].tokenizer
    text = 'What is the man holding in the street?'
    assert ours.tokenizer.encode(text) == tok(text, add_special_tokens=False).input_ids


@pytest.mark.parametrize('kwargs', [dict(num_beams=3, do_sample=False),
                                    dict(do_sample=True, top_k=20, temperature=0.8)],
                         ids=['beam', 'sample'])
def test_beam_and_sampling_generation_match(built, kwargs):
    """Beam search and seeded sampling go through the same transformers machinery."""
    ours = load_ours(built['converted']['llava-hf'])
    hf = built['model']
    pixels = pixel_values(built, seed=3)
    ids = prompt_ids()
    with torch.no_grad():
        torch.manual_seed(123)
        want = hf.generate(input_ids=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, IMAGE_TOKEN_ID),
                           pixel_values=pixels, max_new_tokens=8, eos_token_id=None,
                           pad_token_id=0, **kwargs)[:, ids.shape[1]:]
        torch.manual_seed(123)
        got = ours.generate(ids, pixel_values=pixels, max_new_tokens=8, eos_token_id=None,
                            **kwargs)
    assert got.tolist() == want.tolist()
