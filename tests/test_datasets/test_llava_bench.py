"""LLaVA-Bench (in-the-wild) read from the release's files, its configs, and tools/test.py."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmllava.datasets import LLaVABenchDataset
from mmllava.registry import DATASETS, METRICS

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'llava_bench'


def make_bench(tmp_path, images=('001.jpg', '002.jpg')) -> Path:
    bench = tmp_path / 'bench'
    shutil.copytree(DATA, bench)
    (bench / 'images').mkdir()
    for name in images:
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(bench / 'images' / name)
    return bench


def test_dataset_reads_the_release(tmp_path):
    bench = make_bench(tmp_path)
    ds = LLaVABenchDataset(data_root=str(bench))
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [i['question_id'] for i in infos] == [0, 1, 2]
    assert [i['category'] for i in infos] == ['conv', 'detail', 'complex']
    # model_vqa.py's prompt: the question after <image>, nothing appended.
    assert infos[0]['messages'] == [dict(role='user', content='<image>\nWhat is the name of '
                                         'this famous sight?')]
    assert infos[2]['question'] == 'Why is the cat on the box?'
    assert [i['gt_answer'] for i in infos] == ['Diamond Head.', 'A crater by the sea.',
                                               'It is warm.']
    assert infos[1]['images'] == [str(bench / 'images' / '001.jpg')]
    # The files may also be named from elsewhere (absolute ann_file, no data_root).
    ds = LLaVABenchDataset(ann_file=str(bench / 'questions.jsonl'),
                           img_prefix=str(bench / 'images'))
    assert len(ds) == 3


def test_missing_image_is_a_scored_miss(tmp_path):
    bench = make_bench(tmp_path, images=('001.jpg', ))
    ds = LLaVABenchDataset(data_root=str(bench))
    assert len(ds) == 3 and 'not found' in ds.get_data_info(2)['invalid_sample']
    with pytest.raises(ValueError, match=r"sample 2 .*002\.jpg.*not found"):
        LLaVABenchDataset(data_root=str(bench), fail_on_invalid=True)
    with pytest.raises(ValueError, match='test_mode must be True'):
        LLaVABenchDataset(data_root=str(bench), test_mode=False)


def test_eval_config_builds(tmp_path):
    cfg = Config.fromfile(str(ROOT / 'configs/llava/llava-7b-v1.5_llava_bench_eval.py'))
    gen = cfg.model.generation_cfg
    assert (gen.do_sample, gen.max_new_tokens, gen.num_beams) == (False, 1024, 1)
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == 'LLaVABenchDataset'
    bench = make_bench(tmp_path)
    dataset.update(data_root=str(bench), pipeline=[])
    built = DATASETS.build(dataset)
    assert len(built) == 3 and built.prompt_suffix == ''
    evaluator = dict(cfg.test_evaluator, bench_dir=str(bench),
                     answers_file=str(tmp_path / 'a.jsonl'))
    metric = METRICS.build(evaluator)
    assert metric.prefix == 'llava_bench' and metric.judge_url is None
    assert metric.judge_model == 'gpt-4-0314' and metric.temperature == 0.2
    assert metric.max_tokens == 1024


def _tiny_eval_config(path, dataset: dict, evaluator: dict) -> str:
    """tools/test.py's config: the tiny LLaVA (llava-tiny_vqa.py, its pipeline) on ``dataset``."""
    lines = [f'_base_ = [{str(ROOT / "configs/llava/llava-tiny_vqa.py")!r}]',
             'model = dict(generation_cfg=dict(max_new_tokens=3))',
             'test_dataloader = dict(batch_size=3, num_workers=0, '
             "sampler=dict(type='DefaultSampler', shuffle=False), "
             "collate_fn=dict(type='llava_collate'), "
             f'dataset=dict({dataset!r}, test_mode=True, pipeline={{{{_base_.test_pipeline}}}}))',
             f'test_evaluator = {evaluator!r}', "test_cfg = dict(type='TestLoop')"]
    Path(path).write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.mark.slow
def test_test_tool_reviews_with_our_server_and_matches_offline(tmp_path):
    """tools/test.py on the tiny model: LLaVA's answers file, reviewed by tools/serve.py (the
    same tiny model as the judge, in this process); the offline summary of the review file
    gives the run's numbers."""
    import torch
    from fixtures_llava import load_script, serving_in_thread

    from mmllava.apis import get_model
    from mmllava.engine.checkpoint import save_weights
    from mmllava.evaluation.offline import evaluate_predictions
    bench = make_bench(tmp_path)
    answers, reviews = tmp_path / 'answers.jsonl', tmp_path / 'reviews.jsonl'
    torch.manual_seed(0)
    # A longer context (rotary positions, nothing learned) holds LLaVA's ~400-token rule.
    judge = get_model(str(ROOT / 'configs/llava/llava-tiny_vqa.py'),
                      llm=dict(config=dict(max_position_embeddings=1024)))
    weights = tmp_path / 'tiny.safetensors'
    save_weights(judge.state_dict(), weights)
    srv = load_script('tools/serve.py').build_server(judge, 'tiny-judge', port=0,
                                                     log_level='warning')
    evaluator = dict(type='LLaVABenchMetric', bench_dir=str(bench), answers_file=str(answers),
                     reviews_file=str(reviews), model_id='tiny', judge_model='tiny-judge',
                     max_tokens=4, temperature=0.0, prefix='llava_bench')
    dataset = dict(type='LLaVABenchDataset', data_root=str(bench))
    with serving_in_thread(srv):
        config = _tiny_eval_config(tmp_path / 'bench_eval.py', dataset,
                                   dict(evaluator, judge_url=srv.url))
        metrics_file = tmp_path / 'metrics.json'
        # In this process (the server's thread answers it): no second interpreter to start.
        load_script('tools/test.py').main([config, str(weights), '--work-dir',
                                           str(tmp_path / 'work'), '--out-metrics',
                                           str(metrics_file), '--no-progress'])
    metrics = json.loads(metrics_file.read_text())
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r['question_id'] for r in rows] == [0, 1, 2]
    assert all(set(r) == {'question_id', 'prompt', 'text', 'answer_id', 'model_id', 'metadata'}
               for r in rows)
    assert rows[2]['prompt'] == 'Why is the cat on the box?' and rows[0]['model_id'] == 'tiny'
    assert metrics['llava_bench/num_samples'] == 3 and metrics['llava_bench/num_reviews'] == 3
    assert len(reviews.read_text().splitlines()) == 3
    offline = evaluate_predictions('llava_bench', str(reviews), [str(bench)])
    assert offline == {k: metrics[k] for k in offline}
