"""Closed-set ranking: the batched shared-prefix scores equal full forwards, class by class."""
import pytest
import torch

from mmllava.apis import get_model, inference_model

CONFIG = 'configs/llava/llava-tiny_vqa.py'
CLASSES = ['walking', 'walking backward', 'doing a spin kick', 'getting up']


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    # chunk 3 < 4 classes: the repeated cache is copied for the first chunk, reused after
    return get_model(CONFIG, class_names=CLASSES, class_chunk_size=3)


def brute_force(model, prompts, candidates):
    out = torch.zeros(len(prompts), len(candidates))
    for b, prompt in enumerate(prompts):
        for j, cand in enumerate(candidates):
            ids = torch.tensor([prompt + cand])
            logp = model.llm(input_ids=ids).logits.float().log_softmax(-1)[0]
            out[b, j] = sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(cand))
    return out


def test_class_ids_end_with_eos_and_keep_prefixes_apart(model):
    ids = model.class_token_ids()
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
    candidates = model.class_token_ids()
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


def test_class_names_from_label_map_and_errors(tmp_path):
    label_map = tmp_path / 'label_map.txt'
    label_map.write_text('\n'.join(CLASSES) + '\n')
    m = get_model(CONFIG, class_names=str(label_map))
    assert m.class_names == CLASSES
    with pytest.raises(ValueError, match='duplicates'):
        get_model(CONFIG, class_names=['a', 'a'])
    missing = get_model(CONFIG, class_names=str(tmp_path / 'nope.txt'))  # read on first use
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        missing.class_names
    with pytest.raises(ValueError, match='no class_names'):
        get_model(CONFIG).class_token_ids()
