"""The benchmark readers on the official-format fixtures of tests/data/eval, and their configs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmllava.datasets import GQADataset, POPEDataset, ScienceQADataset, TextVQADataset
from mmllava.datasets.annotations import AnnotationError
from mmllava.registry import DATASETS, METRICS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'eval'
SHORT = 'Answer the question using a single word or phrase.'
MC = "Answer with the option's letter from the given choices directly."


def save_image(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)


def samples(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def user_turns(dataset):
    out = []
    for s in samples(dataset):
        assert len(s['messages']) == 1 and s['messages'][0]['role'] == 'user'
        out.append(s['messages'][0]['content'])
    return out


# ---------------------------------------------------------------- ScienceQA
def test_scienceqa_img(tmp_path):
    for pid in ('7', '12'):
        save_image(tmp_path / pid / 'image.png')
    ds = ScienceQADataset(ann_file=str(DATA / 'scienceqa_problems.json'),
                          split_file=str(DATA / 'scienceqa_pid_splits.json'), split='test',
                          img_prefix=str(tmp_path))
    assert len(ds) == 2  # problem 15 has no image: not in ScienceQA-IMG
    assert user_turns(ds) == [
        f'<image>\nWhich animal is a mammal?\nA. frog\nB. dog\n{MC}',
        f'<image>\nContext: Look at the picture.\nWhich is a solid?\nA. milk\nB. rock\n'
        f'C. juice\n{MC}',
    ]
    s = samples(ds)
    assert [x['question_id'] for x in s] == ['7', '12']
    assert [x['gt_answer'] for x in s] == ['B', 'B']
    assert s[1]['choices'] == ['milk', 'rock', 'juice']
    assert s[0]['images'] == [str(tmp_path / '7' / 'image.png')]
    assert s[0]['category'] == 'natural science'


def test_scienceqa_all_problems_and_splits(tmp_path):
    ds = ScienceQADataset(ann_file=str(DATA / 'scienceqa_problems.json'),
                          split_file=str(DATA / 'scienceqa_pid_splits.json'), split='test',
                          image_only=False, check_images=False, img_prefix=str(tmp_path))
    assert len(ds) == 3
    text_only = samples(ds)[2]
    assert text_only['images'] == [] and text_only['gt_answer'] == 'A'
    assert text_only['messages'][0]['content'] == (
        f'Which word rhymes with cat?\nA. hat\nB. dog\n{MC}')
    assert ds.modality_lengths[2] < 0 < ds.modality_lengths[0]
    val = ScienceQADataset(ann_file=str(DATA / 'scienceqa_problems.json'),
                           split_file=str(DATA / 'scienceqa_pid_splits.json'), split='val',
                           check_images=False)
    assert [s['gt_answer'] for s in samples(val)] == ['D']


def test_scienceqa_errors(tmp_path):
    problems = json.loads((DATA / 'scienceqa_problems.json').read_text())
    problems['12']['answer'] = 5
    bad = tmp_path / 'problems.json'
    bad.write_text(json.dumps(problems))
    with pytest.raises(AnnotationError, match=r"problems\.json: problem '12'.*index of a choice"):
        ScienceQADataset(ann_file=str(bad), split_file=str(DATA / 'scienceqa_pid_splits.json'),
                         check_images=False)
    with pytest.raises(AnnotationError, match="no split 'minitest'"):
        ScienceQADataset(ann_file=str(DATA / 'scienceqa_problems.json'),
                         split_file=str(DATA / 'scienceqa_pid_splits.json'),
                         split='minitest', check_images=False)
    # A missing image is a miss to score; with fail_on_invalid it names the problem and the
    # path; skip_invalid drops and counts it.
    save_image(tmp_path / 'img' / '7' / 'image.png')
    kwargs = dict(ann_file=str(DATA / 'scienceqa_problems.json'),
                  split_file=str(DATA / 'scienceqa_pid_splits.json'),
                  img_prefix=str(tmp_path / 'img'))
    ds = ScienceQADataset(**kwargs)
    assert len(ds) == 2 and not ds.skipped
    assert 'not found' in ds.get_data_info(1)['invalid_sample']
    with pytest.raises(ValueError, match=r"sample '12'.*12/image\.png.*not found.*"
                                         r"fail_on_invalid=False to score"):
        ScienceQADataset(fail_on_invalid=True, **kwargs)
    ds = ScienceQADataset(skip_invalid=True, **kwargs)
    assert len(ds) == 1 and [s.sample_id for s in ds.skipped] == ['12']
    with pytest.raises(ValueError, match='test_mode must be True'):
        ScienceQADataset(test_mode=False, **kwargs)


# ---------------------------------------------------------------- POPE
def test_pope_one_split(tmp_path):
    for i in (1, 2, 3):
        save_image(tmp_path / f'COCO_val2014_{i:012d}.jpg')
    ds = POPEDataset(ann_file='coco_pope_random.json', data_root=str(DATA),
                     img_prefix=str(tmp_path))
    assert len(ds) == 3
    assert user_turns(ds) == [f'<image>\nIs there a dog in the image?\n{SHORT}'] * 3
    s = samples(ds)
    assert [x['question_id'] for x in s] == [1, 2, 3]
    assert [x['gt_answer'] for x in s] == ['yes', 'no', 'yes']
    assert {x['category'] for x in s} == {'random'}
    assert s[0]['images'] == [str(tmp_path / 'COCO_val2014_000000000001.jpg')]


def test_pope_several_splits_get_unique_ids():
    ds = POPEDataset(ann_file=['coco_pope_random.json', 'coco_pope_popular.json'],
                     data_root=str(DATA), check_images=False)
    s = samples(ds)
    assert [x['question_id'] for x in s] == ['random_1', 'random_2', 'random_3',
                                             'popular_11', 'popular_12']
    assert [x['category'] for x in s] == ['random'] * 3 + ['popular'] * 2


def test_pope_malformed(tmp_path):
    bad = tmp_path / 'coco_pope_adversarial.json'
    lines = (DATA / 'coco_pope_random.json').read_text().splitlines()
    lines[1] = json.dumps({'question_id': 2, 'image': 'x.jpg', 'text': 'Is there a cat?'})
    bad.write_text('\n'.join(lines))
    with pytest.raises(AnnotationError, match='coco_pope_adversarial.json: line 2 needs '
                                              'question_id and label'):
        POPEDataset(ann_file=str(bad), check_images=False)


# ---------------------------------------------------------------- GQA
def test_gqa(tmp_path):
    for name in ('n288870', 'n288871'):
        save_image(tmp_path / f'{name}.jpg')
    ds = GQADataset(ann_file=str(DATA / 'gqa_testdev_balanced_questions.json'),
                    img_prefix=str(tmp_path))
    assert len(ds) == 3
    assert user_turns(ds) == [f'<image>\nIs the sky blue?\n{SHORT}',
                              f'<image>\nWhich side is the cup on?\n{SHORT}',
                              f'<image>\nWhat animal is it?\n{SHORT}']
    s = samples(ds)
    assert [x['question_id'] for x in s] == ['20968379', '201307251', '201640614']
    assert [x['gt_answer'] for x in s] == ['yes', 'left', 'dog']
    assert s[2]['images'] == [str(tmp_path / 'n288870.jpg')]


def test_gqa_malformed(tmp_path):
    data = json.loads((DATA / 'gqa_testdev_balanced_questions.json').read_text())
    del data['201307251']['answer']
    bad = tmp_path / 'q.json'
    bad.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"q\.json: question '201307251' has no "
                                              '"answer"'):
        GQADataset(ann_file=str(bad), check_images=False)


# ---------------------------------------------------------------- TextVQA
OCR = 'textvqa_rosetta_ocr_val.json'  # TextVQA_Rosetta_OCR_v0.2_val.json's layout


def test_textvqa(tmp_path):
    for name in ('0054c91397f2fe05', '005635e119b9f32f'):
        save_image(tmp_path / f'{name}.jpg')
    # LLaVA-1.5's prompt (llava_textvqa_val_v051_ocr.jsonl): the question capitalized, the
    # Rosetta tokens joined with ", ", the line kept when an image has none.
    ds = TextVQADataset(ann_file=str(DATA / 'textvqa_val.json'), ocr_file=str(DATA / OCR),
                        img_prefix=str(tmp_path))
    assert user_turns(ds) == [
        f'<image>\nWhat is the brand?\nReference OCR token: NOKIA, Connecting, People\n{SHORT}',
        f'<image>\nWhat does it say?\nReference OCR token: \n{SHORT}']
    s = samples(ds)
    assert [x['question_id'] for x in s] == [34602, 34603]
    assert s[0]['gt_answer'] == ['Nokia'] * 8 + ['nokia phone'] * 2
    assert len(s[1]['gt_answer']) == 10
    # The prompt without OCR tokens, the question as the file has it.
    ds = TextVQADataset(ann_file=str(DATA / 'textvqa_val.json'), with_ocr=False,
                        img_prefix=str(tmp_path))
    assert user_turns(ds) == [f'<image>\nwhat is the brand?\n{SHORT}',
                              f'<image>\nwhat does it say?\n{SHORT}']


def test_textvqa_ocr_tokens_sources_and_errors(tmp_path):
    # The default OCR file is the official name under data_root.
    root = tmp_path / 'textvqa'
    root.mkdir()
    shutil.copy(DATA / 'textvqa_val.json', root / 'TextVQA_0.5.1_val.json')
    kwargs = dict(ann_file='TextVQA_0.5.1_val.json', data_root=str(root), check_images=False)
    with pytest.raises(FileNotFoundError, match=r"OCR file not found: .*TextVQA_Rosetta_OCR_v0"
                                                r"\.2_val\.json.*dl\.fbaipublicfiles\.com.*"
                                                'with_ocr=False'):
        TextVQADataset(**kwargs)
    shutil.copy(DATA / OCR, root / 'TextVQA_Rosetta_OCR_v0.2_val.json')
    assert 'Reference OCR token: NOKIA,' in user_turns(TextVQADataset(**kwargs))[0]
    # ocr_file='': the records' own ocr_tokens; a record without them is named.
    data = json.loads((DATA / 'textvqa_val.json').read_text())
    data['data'][0]['ocr_tokens'] = ['nokia']
    merged = tmp_path / 'merged.json'
    merged.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"question 34603 has no \"ocr_tokens\""):
        TextVQADataset(ann_file=str(merged), ocr_file='', check_images=False)
    data['data'][1]['ocr_tokens'] = []
    merged.write_text(json.dumps(data))
    assert user_turns(TextVQADataset(ann_file=str(merged), ocr_file='', check_images=False))[
        0] == f'<image>\nWhat is the brand?\nReference OCR token: nokia\n{SHORT}'
    ocr = tmp_path / 'ocr.json'
    ocr.write_text(json.dumps({'data': []}))
    with pytest.raises(AnnotationError, match="no OCR tokens for image '0054c91397f2fe05'"):
        TextVQADataset(ann_file=str(DATA / 'textvqa_val.json'), ocr_file=str(ocr),
                       check_images=False)


def test_textvqa_malformed(tmp_path):
    data = json.loads((DATA / 'textvqa_val.json').read_text())
    data['data'][1]['answers'] = []
    bad = tmp_path / 'tv.json'
    bad.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r'tv\.json: record #1 needs question_id and '
                                              'answers'):
        TextVQADataset(ann_file=str(bad), check_images=False)
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        TextVQADataset(ann_file=str(tmp_path / 'nothing.json'), check_images=False)


# ---------------------------------------------------------------- metrics on the samples
def test_samples_are_scored_by_their_metrics():
    """The samples' fields are what the metric classes read."""
    ds = ScienceQADataset(ann_file=str(DATA / 'scienceqa_problems.json'),
                          split_file=str(DATA / 'scienceqa_pid_splits.json'),
                          check_images=False)
    metric = METRICS.build(dict(type='MultipleChoiceAccuracy', prefix='mc'))
    metric.process(None, [dict(s, pred_answer=p) for s, p in zip(samples(ds), ['B', 'A'])])
    assert metric.compute_metrics(metric.results)['acc'] == 50.0
    ds = POPEDataset(ann_file=['coco_pope_random.json', 'coco_pope_popular.json'],
                     data_root=str(DATA), check_images=False)
    metric = METRICS.build(dict(type='POPEMetric'))
    metric.process(None, [dict(s, pred_answer=s['gt_answer']) for s in samples(ds)])
    values = metric.compute_metrics(metric.results)
    assert values['acc'] == 100.0 and values['f1_split_mean'] == 100.0


# ---------------------------------------------------------------- configs
CONFIGS = {
    'gqa': ('gqa_testdev_balanced_questions.json', 'gqa/acc'),
    'textvqa': ('textvqa_val.json', 'textvqa/acc'),
    'scienceqa': ('scienceqa_problems.json', 'mc/acc'),
    'pope': ('coco_pope_random.json', 'pope/acc'),
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_eval_configs_build(name, tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs' / 'llava' / f'llava-7b-v1.5_{name}_eval.py'))
    assert cfg.model.generation_cfg.do_sample is False
    assert cfg.model.generation_cfg.max_new_tokens <= 16
    dataset = cfg.test_dataloader.dataset
    assert dataset.test_mode
    # The fixtures under the config's file names.
    root = tmp_path / 'data'
    files = dataset.ann_file if isinstance(dataset.ann_file, list) else [dataset.ann_file]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA / CONFIGS[name][0], root / f)
    if name == 'scienceqa':
        shutil.copy(DATA / 'scienceqa_pid_splits.json', root / dataset.split_file)
    if name == 'textvqa':
        shutil.copy(DATA / OCR, root / dataset.ocr_file)
    dataset.update(data_root=str(root), check_images=False)
    dataset.pipeline = []  # the tokenizer comes with a model; the readers are what is tested
    built = DATASETS.build(dataset)
    assert len(built) > 0
    metric = METRICS.build(cfg.test_evaluator)
    assert f'{metric.prefix}/acc' == CONFIGS[name][1]


# ---------------------------------------------------------------- tools/test.py end to end
@pytest.mark.slow
def test_scienceqa_test_tool_matches_offline_scoring(tmp_path):
    """tools/test.py with the tiny model on the ScienceQA fixture: mc/acc as offline."""
    from fixtures_llava import run_test_tool, shared_build, write_tiny_eval_config
    converted = Path(shared_build()['converted']['llava-hf'])
    for pid in ('7', '12'):
        save_image(tmp_path / 'images' / pid / 'image.png')
    dataset = dict(type='ScienceQADataset', data_root=str(DATA),
                   ann_file='scienceqa_problems.json', split_file='scienceqa_pid_splits.json',
                   img_prefix=str(tmp_path / 'images'))
    config = write_tiny_eval_config(tmp_path / 'sqa_eval.py', converted, dataset,
                                    dict(type='MultipleChoiceAccuracy', prefix='mc'),
                                    batch_size=2, max_new_tokens=2)
    preds, metrics_file = tmp_path / 'preds.json', tmp_path / 'metrics.json'
    proc = run_test_tool(config, converted / 'model.safetensors', tmp_path / 'work',
                         '--out', preds, '--out-metrics', metrics_file)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    metrics = json.loads(metrics_file.read_text())
    assert metrics['mc/num_samples'] == 2 and 0 <= metrics['mc/acc'] <= 100
    rows = json.loads(preds.read_text())
    assert sorted(r['question_id'] for r in rows) == ['12', '7']
    # Offline scoring against problems.json; only the two ScienceQA-IMG test problems were run.
    from mmllava.evaluation.offline import evaluate_predictions
    offline = evaluate_predictions('multiple_choice', preds, [DATA / 'scienceqa_problems.json'],
                                   allow_missing=True)
    assert offline['mc/num_missing'] == 2  # problems 15 (no image) and 20 (val)
    # Offline divides by the 4 annotated problems, the run by its 2.
    assert offline['mc/acc'] * 4 == pytest.approx(metrics['mc/acc'] * 2)
