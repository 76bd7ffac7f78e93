"""Zoo names with weights converted from llava-hf or original checkpoints, answering as
transformers does on the source.

The tiny stand-ins of tests/fixtures_llava.py are converted under a zoo name into a temporary
``$MMLLAVA_HOME`` with ``tools/model_converters/llava_to_mmllava.py``. ``llava-tinyhf_vqa`` is
a zoo entry registered for these tests whose config is the stand-ins' architecture with the
original's vocabulary (1000 rows, pad 0), as ``llava-7b-v1.5_vqa``'s config has LLaMA's
32000 rows: the converted folder's config.py then differs from it in the vocabulary only.
No test builds a 7B model.
"""
import os.path as osp
import warnings

import numpy as np
import pytest
import torch
from fixtures_llava import (
    SP_VOCAB,
    hf_model_with_rows,
    load_script,
    shared_build,
    write_original,
)
from mmengine.config import Config

from mmllava.apis import LlavaInferencer, ModelHub, get_model, inference_model
from mmllava.conversation import IMAGE_TOKEN_INDEX, JSONTokenizer, SentencePieceTokenizer

ZOO = 'llava-tinyhf_vqa'
QUESTION = 'What is the person doing?'


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    built = shared_build()
    root = tmp_path_factory.mktemp('original32k')
    # An original checkpoint holds LLaMA's rows only (no <image>/<pad> rows).
    src = write_original(built['model'], built['paths']['sp_model'], str(root / 'original'),
                         str(root / 'clip'), vocab_rows=SP_VOCAB)
    sources = dict(built['paths'], **{'original-32k': src})
    return dict(built, sources=sources)


@pytest.fixture
def home(built, tmp_path, monkeypatch):
    """``$MMLLAVA_HOME`` in tmp_path, and the test's zoo entry."""
    cfg = Config.fromfile(osp.join(built['converted']['original'], 'config.py'))
    cfg.model.llm.config.update(vocab_size=SP_VOCAB, pad_token_id=0)
    cfg.model.data_preprocessor.pad_token_id = 0
    cfg.model.tokenizer = None  # zoo configs leave it to the converted folder
    zoo_config = tmp_path / 'llava-tinyhf_vqa.py'
    cfg.dump(str(zoo_config))
    entry = {'Name': ZOO, 'Config': str(zoo_config), 'Weights': f'{ZOO}/model.safetensors',
             'Metadata': {'Converted From': {'Weights': 'a tiny stand-in'}}}
    monkeypatch.setattr(ModelHub, '_models', dict(ModelHub._load(), **{ZOO: entry}))
    monkeypatch.setenv('MMLLAVA_HOME', str(tmp_path / 'home'))
    return tmp_path / 'home'


def _convert(src: str, out) -> None:
    load_script('tools/model_converters/llava_to_mmllava.py').main([src, str(out)])


def _image():
    return np.random.default_rng(3).integers(0, 256, (30, 30, 3), dtype=np.uint8)


def _our_prompt_ids(model) -> torch.Tensor:
    """The prompt ids our pipeline gives the question (placeholders -200)."""
    inferencer = LlavaInferencer(model)
    packed = inferencer.pipeline(inferencer._sample(0, _image(), QUESTION))
    return packed['inputs']['input_ids'][None]


def _transformers_answer(built, layout: str, ids: torch.Tensor, max_new_tokens: int) -> str:
    """transformers' greedy answer on the source, for the same prompt ids and its processor's
    pixels."""
    model = built['model']
    image_id = model.config.image_token_id
    if layout == 'original-32k':
        image_id = SP_VOCAB - 1
        model = hf_model_with_rows(model, SP_VOCAB, image_id)
    ids = ids.masked_fill(ids == IMAGE_TOKEN_INDEX, image_id)
    pixels = built['processor'].image_processor([_image()], return_tensors='pt')['pixel_values']
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             pixel_values=pixels, max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=2, pad_token_id=0)
    return built['processor'].tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


@pytest.mark.parametrize('layout, rows, tokenizer', [
    ('llava-hf', 1064, SentencePieceTokenizer),
    ('llava-hf-v5', 1064, JSONTokenizer),
    ('original-32k', SP_VOCAB, SentencePieceTokenizer)])
def test_zoo_name_loads_either_source_and_answers_as_transformers(built, home, layout, rows,
                                                                  tokenizer):
    _convert(built['sources'][layout], home / ZOO)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the folder differs from the zoo in the rows only
        model = get_model(ZOO, pretrained=True, generation_cfg=dict(max_new_tokens=6))
    assert model.llm.config.vocab_size == rows
    assert isinstance(model.tokenizer, tokenizer)
    result = inference_model(model, _image(), QUESTION)
    assert result['prompt'].endswith(f'USER: <image>\n{QUESTION} ASSISTANT:')
    ids = _our_prompt_ids(model)
    assert result['pred_answer'] == _transformers_answer(built, layout, ids, 6).strip()
    # Our ids are the original LLaVA's: each text chunk after <image> starts with
    # sentencepiece's "▁"; llava-hf's processor drops it there, and only there.
    processor = built['processor']
    hf = processor(text=result['prompt'], images=[_image()], return_tensors='pt')['input_ids']
    hf = [IMAGE_TOKEN_INDEX if t == 1000 else t for t in hf[0].tolist()]
    ours = ids[0].tolist()
    after = ours.index(IMAGE_TOKEN_INDEX) + model.num_image_tokens
    assert model.tokenizer.id_to_token(ours[after]) == '\u2581'
    assert ours[1:after] + ours[after + 1:] == hf  # BOS is the template's
    # And by name, as the README's first API line.
    again = inference_model(ZOO, _image(), QUESTION, max_new_tokens=6)
    assert again['pred_answer'] == result['pred_answer']


def test_scores_of_a_converted_zoo_model_match_transformers(built, home):
    """The logits over every row: the llava-hf model's 1064, as transformers computes them."""
    _convert(built['sources']['llava-hf-v5'], home / ZOO)
    model = get_model(ZOO, pretrained=True)
    ids = torch.tensor([[1, 5, 6] + [IMAGE_TOKEN_INDEX] * model.num_image_tokens + [8, 9]])
    pixels = built['processor'].image_processor([_image()], return_tensors='pt')['pixel_values']
    with torch.no_grad():
        got = model(dict(input_ids=ids, pixel_values=pixels), mode='tensor')
        want = built['model'](input_ids=ids.masked_fill(ids == IMAGE_TOKEN_INDEX, 1000),
                              pixel_values=pixels).logits
    assert got.shape[-1] == 1064
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_a_real_zoo_name_builds_from_the_folder_and_names_what_differs(built, home):
    """llava-7b-v1.5_caption converted from a tiny stand-in: the folder's config.py (written
    over the caption zoo config) is built, with a warning naming the fields unlike the zoo's."""
    name = 'llava-7b-v1.5_caption'
    _convert(built['sources']['llava-hf'], home / name)
    cfg = Config.fromfile(str(home / name / 'config.py'))
    assert cfg.model.task == 'caption'
    with pytest.warns(UserWarning) as record:
        model = get_model(name, pretrained=True, generation_cfg=dict(max_new_tokens=3))
    message = ' '.join(str(w.message) for w in record)
    assert 'model.llm.config.hidden_size: zoo 4096, folder 64' in message
    assert 'vocab_size' not in message and 'pad_token_id' not in message
    assert model.llm.config.hidden_size == 64  # the folder's, not the 7B's
    assert 'pred_caption' in inference_model(model, _image())


def test_action_recipe_without_weights_says_how_to_train_them(home):
    name = 'llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f'
    with pytest.raises(FileNotFoundError) as err:
        get_model(name, pretrained=True)
    message = str(err.value)
    config = ModelHub.get(name)['Config']
    assert f'python tools/train.py {config}' in message
    assert 'merge_lora.py' in message and str(home / name / 'model.safetensors') in message
    assert 'nowhere' not in message
