"""mmllava.apis: the zoo, get_model, inference_model and the batched inferencer."""

import numpy as np
import pytest
from fixtures_llava import TINY_CONFIG, tiny_model
from PIL import Image

from mmllava.apis import LlavaInferencer, get_model, inference_model, list_models

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The "
          "assistant gives helpful, detailed, and polite answers to the user's questions.")


@pytest.fixture(scope='module')
def tiny():
    return tiny_model(generation_cfg=dict(max_new_tokens=5))


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp('imgs')
    paths = []
    for i, size in enumerate([(40, 60), (64, 64), (90, 30)]):
        path = folder / f'img{i}.png'
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_list_models():
    names = list_models()
    for name in ['llava-7b-v1.5_vqa', 'llava-7b-v1.5_caption', 'llava-13b-v1.5_vqa',
                 'llava-tiny_mocap-actions']:
        assert name in names
    # LLaVA-1's <im_start><image><im_end> prompts are not reproduced: not in the zoo.
    assert 'llava-7b-v1_caption' not in names
    llava_7b = list_models('llava-7b*')
    assert {'llava-7b-v1.5_caption', 'llava-7b-v1.5_vqa'} <= set(llava_7b)
    assert llava_7b == sorted(llava_7b) and all(n.startswith('llava-7b') for n in llava_7b)
    assert 'llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f' in llava_7b  # the action recipes
    assert list_models('13b') == ['llava-13b-v1.5_vqa']


def test_zoo_weights_missing_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv('MMLLAVA_HOME', str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        get_model('llava-7b-v1.5_vqa', pretrained=True)
    msg = str(err.value)
    assert 'llava_to_mmllava.py' in msg and str(tmp_path) in msg
    assert 'liuhaotian/llava-v1.5-7b' in msg


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match='llava-7b-v1.5_vqa'):
        get_model('llava-99b')


def test_inference_result_and_exact_prompt(tiny, images):
    result = inference_model(tiny, images[0], 'What is the person doing?')
    assert set(result) == {'pred_answer', 'prompt'}
    assert isinstance(result['pred_answer'], str)
    assert result['prompt'] == (f'{SYSTEM} USER: <image>\nWhat is the person doing? '
                                'ASSISTANT:')


def test_default_question_used(tiny, images):
    result = inference_model(tiny, images[0])
    assert 'What is the person doing?' in result['prompt']


def test_input_kinds_agree(tiny, images):
    path = images[1]
    pil = Image.open(path)
    arr = np.asarray(pil)
    answers = [inference_model(tiny, x, 'Who?')['pred_answer'] for x in (path, pil, arr)]
    assert answers[0] == answers[1] == answers[2]


def test_batch_equals_one_at_a_time(tiny, images):
    questions = ['What is the person doing?', 'Describe it.', 'Is anyone running here?']
    singles = [inference_model(tiny, im, q) for im, q in zip(images, questions)]
    batched = LlavaInferencer(tiny, batch_size=3)(images, questions)
    assert batched == singles
    listed = inference_model(tiny, images, questions)
    assert listed == singles


def test_generate_kwargs_pass_through(tiny, images, monkeypatch):
    """Greedy answers go through our decode loop, beam search through transformers'
    generate; the model's generation_cfg, overridden per call, reaches each."""
    import mmllava.models.decoding as decoding
    calls = []
    generate, decode = tiny.llm.generate, decoding.decode

    def spy_hf(**kwargs):
        ids = generate(**kwargs)
        calls.append(('transformers', kwargs, ids))
        return ids

    def spy_ours(lm, embeds, mask, **kwargs):
        ids = decode(lm, embeds, mask, **kwargs)
        calls.append(('mmllava', kwargs, ids))
        return ids

    monkeypatch.setattr(tiny.llm, 'generate', spy_hf)
    monkeypatch.setattr(decoding, 'decode', spy_ours)
    default = inference_model(tiny, images[0], 'Q?')
    short = inference_model(tiny, images[0], 'Q?', max_new_tokens=1)
    beams = inference_model(tiny, images[0], 'Q?', num_beams=2, max_new_tokens=3)
    hf_greedy = inference_model(tiny, images[0], 'Q?', decoder='transformers')
    (d_by, default_kwargs, default_ids), (s_by, short_kwargs, short_ids), \
        (b_by, beam_kwargs, beam_ids), (h_by, _, hf_ids) = calls
    assert (d_by, s_by, b_by, h_by) == ('mmllava', 'mmllava', 'transformers', 'transformers')
    assert default_kwargs['max_new_tokens'] == 5 and default_kwargs['num_beams'] == 1
    assert short_kwargs['max_new_tokens'] == 1 and short_kwargs['num_beams'] == 1
    assert beam_kwargs['max_new_tokens'] == 3 and beam_kwargs['num_beams'] == 2
    assert hf_ids.tolist() == default_ids.tolist() and hf_greedy == default
    # And takes effect: one token, the first of the greedy answer; at most three with beams.
    assert short_ids.shape == (1, 1) and short_ids[0, 0] == default_ids[0, 0]
    assert short['pred_answer'] == tiny.decode(short_ids)[0]
    assert beam_ids.shape[1] <= 3 and beams['pred_answer'] == tiny.decode(beam_ids)[0]
    assert default['pred_answer'] == tiny.decode(default_ids)[0]


def test_caption_task_gives_pred_caption(images):
    model = get_model(TINY_CONFIG, task='caption', default_question='Describe the image.')
    result = inference_model(model, images[0])
    assert set(result) == {'pred_caption', 'prompt'}


def test_missing_image_named(tiny, tmp_path):
    missing = tmp_path / 'nope.jpg'
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        inference_model(tiny, str(missing), 'Q?')


def test_questions_must_match_inputs(tiny, images):
    with pytest.raises(ValueError, match='questions'):
        inference_model(tiny, images, ['only one'])


@pytest.mark.parametrize('inputs,error,match', [
    (None, TypeError, 'inputs is None: expected an image'),
    ([], ValueError, 'empty list'),
    (123, TypeError, 'inputs: expected an image .* got int'),
    (b'what?', TypeError, 'got bytes'),
    ({'image': 'a.jpg'}, TypeError, 'got dict'),
    (['ok.jpg', 3.5], TypeError, r'inputs\[1\]: expected .* got float'),
    (np.zeros((4, 4), np.uint8), ValueError, r'HxWx3 .* got shape \(4, 4\)'),
])
def test_wrong_inputs_say_what_is_accepted(tiny, inputs, error, match):
    with pytest.raises(error, match=match):
        inference_model(tiny, inputs, 'Q?')


def test_wrong_questions_say_what_is_accepted(tiny, images):
    with pytest.raises(TypeError, match='questions: expected a str'):
        inference_model(tiny, images[0], 123)
    with pytest.raises(TypeError, match=r'questions\[1\]: expected a str, got int'):
        inference_model(tiny, images[:2], ['a?', 7])


def test_npy_files_are_arrays_everywhere(tiny, tmp_path):
    """A .npy file is the array it holds: an HxWx3 one answers as that image does."""
    from mmllava.apis.inference import is_video, load_input
    image = (np.arange(56 * 56 * 3) % 251).reshape(56, 56, 3).astype(np.uint8)
    clip = np.stack([image] * 2)
    np.save(tmp_path / 'image.npy', image)
    np.save(tmp_path / 'clip.npy', clip)
    assert not is_video(load_input(str(tmp_path / 'image.npy')))
    assert is_video(load_input(tmp_path / 'clip.npy'))
    from_file = inference_model(tiny, str(tmp_path / 'image.npy'), 'Q?')
    from_array = inference_model(tiny, image, 'Q?')
    assert from_file == from_array and '<image>' in from_file['prompt']
    assert '<video>' in inference_model(tiny, str(tmp_path / 'clip.npy'), 'Q?')['prompt']
    (tmp_path / 'bad.npy').write_bytes(b'not numpy')
    with pytest.raises(ValueError, match='bad.npy is not a numpy array file'):
        inference_model(tiny, str(tmp_path / 'bad.npy'), 'Q?')
