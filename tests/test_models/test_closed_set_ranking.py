"""Closed-set ranking: one pass over the shared prompt's cache, equal to full forwards."""
import numpy as np
import pytest
import torch
from fixtures_llava import TINY_CONFIG, tiny_model
from mmengine.config import Config
from transformers import DynamicCache

from mmllava.apis import get_model, inference_model
from mmllava.apis.pipeline import closed_set_classes
from mmllava.conversation import IMAGE_TOKEN_INDEX, answer_token_ids

CONFIG = TINY_CONFIG
CLASSES = ['walking', 'walking backward', 'doing a spin kick', 'getting up']


@pytest.fixture(scope='module')
def model():
    # 3 classes a pass < 4 classes: the cache is cropped back to the prompt between passes
    m = tiny_model(class_chunk_size=3)
    # A closed-set model: its test dataset's classes are what it ranks.
    m.cfg.test_dataloader = dict(dataset=dict(type='ActionListDataset', label_map=CLASSES))
    return m


def class_ids(model):
    return answer_token_ids(CLASSES, model.tokenizer, 'vicuna_v1')


def brute_force(model, prompts, candidates):
    out = torch.zeros(len(prompts), len(candidates))
    for b, prompt in enumerate(prompts):
        for j, cand in enumerate(candidates):
            ids = torch.tensor([prompt + cand])
            logp = model.llm(input_ids=ids).logits.float().log_softmax(-1)[0]
            out[b, j] = sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(cand))
    return out


def test_class_ids_end_with_eos_and_keep_prefixes_apart(model):
    ids = class_ids(model)
    eos = model.tokenizer.eos_token_id
    assert all(row[-1] == eos for row in ids)
    # "walking" is a prefix of "walking backward" as text; the end token keeps them apart
    assert ids[1][:len(ids[0]) - 1] == ids[0][:-1] and ids[1] != ids[0]


def test_scores_equal_brute_force_with_left_padding(model):
    tok = model.tokenizer
    prompts = [[tok.bos_token_id] + tok.encode('USER: what is the person doing? ASSISTANT:'),
               [tok.bos_token_id] + tok.encode('USER: hi ASSISTANT:')]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    candidates = class_ids(model)
    with torch.no_grad():
        got = model.score_answers(ids, mask, None, candidates)
        want = brute_force(model, prompts, candidates)
    assert got.shape == (2, len(CLASSES))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_inference_returns_label_and_scores(model):
    image = (torch.arange(56 * 56 * 3) % 251).reshape(56, 56, 3).to(torch.uint8).numpy()
    result = inference_model(model, image, 'What is the person doing?', max_new_tokens=2)
    scores = result['pred_scores']
    assert len(scores) == len(CLASSES) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert result['pred_label'] == max(range(len(CLASSES)), key=scores.__getitem__)
    assert result['pred_class'] == CLASSES[result['pred_label']]


def test_pred_class_agrees_with_generated_class_names(model, monkeypatch):
    """Where the generated text names a class, pred_class is that class even when the
    ranking puts another first; where it names none, the ranking's first."""
    image = (torch.arange(56 * 56 * 3) % 251).reshape(56, 56, 3).to(torch.uint8).numpy()
    ranked = inference_model(model, image, 'What is the person doing?', max_new_tokens=2)
    last = min(range(len(CLASSES)), key=ranked['pred_scores'].__getitem__)
    for text, want in [(CLASSES[last].upper() + '.', last), ('no class here', None)]:
        monkeypatch.setattr(model, 'decode', lambda ids, text=text: [text] * len(ids))
        result = inference_model(model, image, 'What is the person doing?', max_new_tokens=2)
        assert result['pred_answer'] == text
        assert result['pred_scores'] == pytest.approx(ranked['pred_scores'])
        assert result['pred_label'] == (ranked['pred_label'] if want is None else want)
        assert result['pred_class'] == CLASSES[result['pred_label']]


def test_classes_from_the_test_datasets_label_map(tmp_path):
    (tmp_path / 'label_map.txt').write_text('\n'.join(['ApplyEyeMakeup', 'brush_hair']) + '\n')
    cfg = Config(dict(test_dataloader=dict(dataset=dict(
        type='ActionListDataset', data_root=str(tmp_path), label_map='label_map.txt'))))
    assert closed_set_classes(cfg) == ['apply eye makeup', 'brush hair']  # as words
    cfg.test_dataloader.dataset.rank_classes = False
    assert closed_set_classes(cfg) is None
    assert closed_set_classes(Config(dict(test_pipeline=[]))) is None  # an open-ended model
    cfg.test_dataloader.dataset.update(rank_classes=True, label_map='nope.txt')
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        closed_set_classes(cfg)


def test_each_sample_ranks_its_own_candidates(model):
    """Samples with other candidate sets share one pass over the union; each keeps its own
    softmax, equal to its scores alone. A batch mixing ranked and unranked samples is refused."""
    from mmpretrain.structures import DataSample
    tok = model.tokenizer
    prompts = [[tok.bos_token_id] + tok.encode('USER: what is the person doing? ASSISTANT:'),
               [tok.bos_token_id] + tok.encode('USER: hi ASSISTANT:')]
    ids, mask = _left_padded(prompts)
    cands = class_ids(model)
    sets = [cands[:3], [cands[3], cands[0]]]
    samples = [DataSample(metainfo=dict(candidate_ids=c)) for c in sets]
    out = model.predict(dict(input_ids=ids, attention_mask=mask), samples, max_new_tokens=1)
    for b, (sample, cset) in enumerate(zip(out, sets)):
        alone = model.score_answers(ids[b:b + 1, -len(prompts[b]):], None, None, cset)[0]
        torch.testing.assert_close(sample.pred_scores, alone.softmax(-1), atol=1e-5, rtol=0)
        assert sample.pred_label == int(alone.argmax())
    mixed = [DataSample(metainfo=dict(candidate_ids=cands)), DataSample()]
    with pytest.raises(ValueError, match='mixes samples with and without candidate_ids'):
        model.predict(dict(input_ids=ids, attention_mask=mask), mixed, max_new_tokens=1)


def _left_padded(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def _visual_prompts(model):
    """Two prompts with an image each (16 placeholder tokens), of different lengths."""
    tok = model.tokenizer
    n = model.num_image_tokens
    return [[tok.bos_token_id] + tok.encode('USER:') + [IMAGE_TOKEN_INDEX] * n
            + tok.encode('what is the person doing? ASSISTANT:'),
            [tok.bos_token_id] + [IMAGE_TOKEN_INDEX] * n + tok.encode('hi ASSISTANT:')]


def _pixels(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, 56, 56, generator=g)


def test_visual_prompt_scores_equal_full_sequence_forwards(model):
    """Each class's score equals a full forward of its prompt (with its image) + that class."""
    prompts = _visual_prompts(model)
    pixels = _pixels(0)
    candidates = class_ids(model) + [[7], [9, 11, 13, 15, 17, 2]]  # 1 and 6 tokens
    ids, mask = _left_padded(prompts)
    with torch.no_grad():
        got = model.score_answers(ids, mask, pixels, candidates)
        want = torch.zeros_like(got)
        for b, prompt in enumerate(prompts):
            for j, cand in enumerate(candidates):
                full = torch.tensor([prompt + cand])
                logits = model(dict(input_ids=full, pixel_values=pixels[b:b + 1]),
                               mode='tensor')
                logp = logits.float().log_softmax(-1)[0]
                want[b, j] = sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(cand))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


def test_a_class_score_does_not_depend_on_the_others(model):
    """A subset of the classes, in another order and any pass size, scores as in the full run."""
    prompts = _visual_prompts(model)
    pixels = _pixels(1)
    candidates = class_ids(model) + [[5, 6], [8, 2], [12, 14, 2]]
    ids, mask = _left_padded(prompts)
    with torch.no_grad():
        full = model.score_answers(ids, mask, pixels, candidates)
        subset = [5, 1, 3]
        part = model.score_answers(ids, mask, pixels, [candidates[i] for i in subset])
        model.class_chunk_size = 1
        try:
            one_by_one = model.score_answers(ids, mask, pixels, candidates)
        finally:
            model.class_chunk_size = 3
    torch.testing.assert_close(part, full[:, subset], atol=1e-5, rtol=0)
    torch.testing.assert_close(one_by_one, full, atol=1e-5, rtol=0)


def test_mean_ranking_is_per_token(model):
    prompts = _visual_prompts(model)
    pixels = _pixels(2)
    candidates = class_ids(model)
    ids, mask = _left_padded(prompts)
    with torch.no_grad():
        summed = model.score_answers(ids, mask, pixels, candidates, ranking='sum')
        mean = model.score_answers(ids, mask, pixels, candidates, ranking='mean')
    lengths = torch.tensor([len(c) for c in candidates], dtype=torch.float32)
    torch.testing.assert_close(mean, summed / lengths, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='ranking must be one of'):
        model.score_answers(ids, mask, pixels, candidates, ranking='max')
    with pytest.raises(ValueError, match='ranking must be one of'):
        get_model(CONFIG, ranking='max')


def test_candidates_pass_reads_the_prompt_cache_once(model):
    """The candidates' pass runs B rows (never B x classes) and all their tokens at once."""
    prompts = _visual_prompts(model)
    candidates = class_ids(model)
    ids, mask = _left_padded(prompts)
    shapes = []
    layer = model.llm.model.layers[0]
    handle = layer.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    repeat = DynamicCache
    original = repeat.batch_repeat_interleave
    repeat.batch_repeat_interleave = lambda *a, **k: pytest.fail('the prompt cache was repeated')
    try:
        model.class_chunk_size = 64
        with torch.no_grad():
            model.score_answers(ids, mask, _pixels(3), candidates)
    finally:
        model.class_chunk_size = 3
        repeat.batch_repeat_interleave = original
        handle.remove()
    fed = sum(len(c) - 1 for c in candidates)
    assert [s[:2] for s in shapes] == [(2, ids.shape[1]), (2, fed)]


def test_lora_model_ranks_through_its_adapters():
    """With LoRA (non-zero adapters) the ranking still equals full forwards of that model."""
    torch.manual_seed(0)
    lora = get_model(CONFIG,
                     lora=dict(r=4, alpha=8, dropout=0.0, target_modules=['q_proj', 'v_proj']))
    with torch.no_grad():
        for name, p in lora.llm.named_parameters():
            if 'lora_B' in name:
                p.copy_(torch.randn_like(p) * 0.1)
    tok = lora.tokenizer
    prompt = [tok.bos_token_id] + tok.encode('USER: what now? ASSISTANT:')
    candidates = class_ids(lora)
    with torch.no_grad():
        got = lora.score_answers(torch.tensor([prompt]), None, None, candidates)
        want = brute_force(lora, [prompt], candidates)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert np.isfinite(got.numpy()).all()


def test_inference_pipeline_uses_the_models_tokenizer(model):
    """Inference runs in the model's process: its built tokenizer is used, not a copy."""
    from mmllava.apis.pipeline import build_inference_pipeline
    steps = build_inference_pipeline(model).transforms
    tokenize = next(t for t in steps if type(t).__name__ == 'TokenizeConversation')
    assert tokenize.tokenizer is model.tokenizer


def test_duplicate_classes_are_refused():
    cfg = Config(dict(test_dataloader=dict(dataset=dict(label_map=['a', 'b', 'a']))))
    with pytest.raises(ValueError, match='test_dataloader.dataset.label_map: expected distinct'):
        closed_set_classes(cfg)
