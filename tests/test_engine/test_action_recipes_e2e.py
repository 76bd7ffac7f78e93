"""Every 7B action recipe, end to end on a tiny mmaction2-format dataset, only the model swapped
for a tiny one.

The recipe's own datasets, pipelines (8 frames at 336 px, 576 tokens a frame pooled to 144,
temporal jitter, its question), LoRA, optimizer, hooks and evaluator; its model's widths and
depths cut down (a CLIP at 336 px with 14 px patches, so the token counts are the recipe's).
The base weights are tiny stand-ins of LLaVA-1.5 converted by llava_to_mmllava.py from
llava-hf (transformers-5 layout: tokenizer.json only, 1064 rows) or from an original checkpoint
(tokenizer.model, 1000 rows), alternately; the recipe's LLM config states the other count, as
the zoo's says 32000 against llava-hf's 32064. ``tools/train.py`` runs 2 iterations and the
validation (the best checkpoint kept), then ``tools/test.py`` scores the test list and draws
the confusion matrix.
"""
import glob
import json
import os.path as osp
from pathlib import Path

import numpy as np
import pytest
from fixtures_llava import (
    build_hf_model,
    hf_processor,
    load_script,
    train_tokenizer,
    write_llava_hf,
    write_original,
)
from mmengine.config import Config
from PIL import Image

from mmllava.apis import get_model, inference_model
from mmllava.convert import convert_to_mmllava
from mmllava.evaluation.offline import evaluate_predictions

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs' / 'llava_action'
RECIPES = sorted(p.stem for p in CONFIG_DIR.glob('llava-7b-*.py'))
QLORA = [n for n in RECIPES if '_qlora-' in n]  # their 4-bit base needs bitsandbytes
# A CLIP at the recipes' 336 px / 14 px patches (576 tokens a frame), 16 wide; a 32-wide LLM
# with the context the recipes need (2048 tokens).
VISION_336 = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                  num_attention_heads=2, image_size=336, patch_size=14, hidden_act='quick_gelu',
                  projection_dim=8, layer_norm_eps=1e-5)
TEXT_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096)
# mmaction2-style label maps (raw names: the recipes ask and answer them as words).
LABELS = {'ucf101': ['ApplyEyeMakeup', 'BoxingPunchingBag'],
          'hmdb51': ['brush_hair', 'shake_hands'],
          'kinetics400': ['air drumming', 'passing American football (in game)'],
          'sthv2': ['Pushing something from left to right',
                    'Pushing something from right to left'],
          'stanford40': ['applauding', 'riding_a_horse']}
READABLE = {'ucf101': ['apply eye makeup', 'boxing punching bag'],
            'hmdb51': ['brush hair', 'shake hands'], 'stanford40': ['applauding',
                                                                   'riding a horse']}


def _main(tool: str):
    return load_script(f'tools/{tool}.py').main


@pytest.fixture(scope='module')
def bases(tmp_path_factory):
    """The two converted stand-ins: ``{'llava-hf': folder, 'original': folder}``."""
    root = tmp_path_factory.mktemp('bases')
    sp_model = train_tokenizer(str(root / 'sp'))
    model = build_hf_model(seed=1, vision=VISION_336, **TEXT_TINY)
    processor = hf_processor(sp_model)
    hf = write_llava_hf(model, processor, sp_model, str(root / 'hf'), classic=False)
    original = write_original(model, sp_model, str(root / 'original'), str(root / 'clip'),
                              vocab_rows=1000)
    out = {}
    for name, src in (('llava-hf', hf), ('original', original)):
        out[name] = str(root / f'converted-{name}')
        convert_to_mmllava(src, out[name], verbose=False)
    return out


def _write_data(root: Path, dataset: str, images: bool, train: int) -> None:
    """``train`` training samples and 4 test samples, half of each class."""
    rng = np.random.default_rng(0)
    (root / 'media').mkdir(parents=True)
    (root / 'label_map.txt').write_text('\n'.join(LABELS[dataset]) + '\n')
    for split, n in (('train', train), ('test', 4)):
        lines = []
        for i in range(n):
            name = f'{split}_{i}.' + ('jpg' if images else 'mp4')
            if images:
                Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
                    root / 'media' / name)
            else:
                from mmllava.utils.video_io import write_mp4
                write_mp4(str(root / 'media' / name),
                          rng.integers(0, 256, (10, 24, 32, 3), dtype=np.uint8))
            lines.append(f'{name} {i % 2}')
        (root / f'{split}.txt').write_text('\n'.join(lines) + '\n')


def _tiny_recipe(name: str, base: str, data: Path, wrong_rows: int) -> Config:
    """The recipe with its model's sizes cut down, its paths pointed at the tiny data and
    base, 1 epoch of 2 iterations; all else as configured."""
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    tiny = Config.fromfile(osp.join(base, 'config.py')).model
    cfg.model.vision_encoder.config = tiny.vision_encoder.config
    cfg.model.llm.config = dict(tiny.llm.config, vocab_size=wrong_rows)
    cfg.model.tokenizer = base
    cfg.model.generation_cfg = dict(max_new_tokens=4)  # random weights never stop by themselves
    cfg.load_base = osp.join(base, 'model.safetensors')
    for split, ann in (('train_dataloader', 'train.txt'), ('val_dataloader', 'test.txt'),
                       ('test_dataloader', 'test.txt')):
        loader = cfg[split]
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data), ann_file=ann, label_map='label_map.txt',
                              img_prefix='media')
        for step in loader.dataset.pipeline:
            if step.type == 'TokenizeConversation':
                step.tokenizer = base
    for pipeline in (cfg.train_pipeline, cfg.test_pipeline):  # as get_model's inference reads
        for step in pipeline:
            if step.type == 'TokenizeConversation':
                step.tokenizer = base
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].classes = str(data / 'label_map.txt')
    cfg.train_cfg.max_epochs = 1
    # The schedule squeezed into the 2 iterations (a 3% warmup rounds to none of them).
    warmup, cosine = cfg.param_scheduler
    warmup.update(by_epoch=False, convert_to_iter_based=False, begin=0, end=1)
    cosine.update(by_epoch=False, convert_to_iter_based=False, begin=1, end=2)
    for hook in cfg.custom_hooks:
        if hook.type == 'EvaluateChatHook':
            hook.every_n_iters = 1
    return cfg


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_trains_validates_and_tests(name, bases, tmp_path, capsys):
    pytest.importorskip('av')
    if name in QLORA:
        pytest.importorskip('bitsandbytes', reason='QLoRA recipes quantize the LLM with '
                            'bitsandbytes (pip install -e ".[qlora]")')
    dataset = name.split('_')[-1].split('-')[0]
    images = dataset == 'stanford40'
    source = ('llava-hf', 'original')[RECIPES.index(name) % 2]
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    batch = cfg.train_dataloader.batch_size
    _write_data(tmp_path / 'data', dataset, images, train=2 * batch)  # 2 iterations
    rows = 1064 if source == 'llava-hf' else 1000
    tiny = _tiny_recipe(name, bases[source], tmp_path / 'data', wrong_rows=2064 - rows)
    tiny.dump(str(tmp_path / 'recipe.py'))
    work = tmp_path / 'work'

    _main('train')([str(tmp_path / 'recipe.py'), '--work-dir', str(work)])
    out = capsys.readouterr().out
    # The base's vocabulary rows, whatever the recipe's LLM config said.
    assert f'The LLM gets {rows} vocabulary rows' in out
    log = Path(glob.glob(str(work / '*' / '*.log'))[0]).read_text()
    assert f'train dataset: {2 * batch} samples; sample 0' in log  # DatasetInfoHook
    assert 'labels (' in log and '[masked ' in log and '<visual x' in log
    visual = 576 if images else 8 * 144
    assert f'<visual x{visual}>' in log
    assert 'EvaluateChatHook, before training' in log and 'EvaluateChatHook, iteration 2' in log
    assert 'Epoch(val) [1]' in log and 'action/top1' in log  # validation after the epoch
    if dataset in READABLE:  # mmaction2 names asked and answered as words
        assert all(n in log for n in READABLE[dataset])
        assert LABELS[dataset][0] not in log.split('EvaluateChatHook')[0]
    best = glob.glob(str(work / 'best_action_top1_*.safetensors'))
    assert len(best) == 1, sorted(p.name for p in work.iterdir())

    metrics_file = tmp_path / 'metrics.json'
    preds = tmp_path / 'preds.json'
    _main('test')([str(tmp_path / 'recipe.py'), best[0], '--work-dir', str(tmp_path / 'test'),
                   '--out-metrics', str(metrics_file), '--out', str(preds), '--no-progress'])
    metrics = json.loads(metrics_file.read_text())
    assert metrics['action/num_samples'] == 4 and 0 <= metrics['action/top1'] <= 100
    assert 'action/top5' in metrics and metrics['invalid_samples'] == 0
    assert (tmp_path / 'test' / 'confusion_matrix.png').stat().st_size > 0
    # The run's predictions score offline against the mmaction2 list as they did in the run.
    offline = evaluate_predictions('action', str(preds), [str(tmp_path / 'data' / 'test.txt')])
    for key in ('action/top1', 'action/top5', 'action/exact_match', 'action/mean_class_acc'):
        assert offline[key] == pytest.approx(metrics[key]), key
    run = {p['sample_id']: p for p in json.loads(preds.read_text())}
    assert all(len(p['pred_scores']) == 2 for p in run.values())  # every clip was ranked

    # One file for the zoo (merge_lora.py --no-merge), which loads with no base on disk: the
    # vocabulary rows are read from the LoRA layout itself. It ranks as in the test run.
    single = tmp_path / 'single.safetensors'
    load_script('tools/model_converters/merge_lora.py').main(
        [str(tmp_path / 'recipe.py'), best[0], str(single), '--no-merge'])
    alone = Config.fromfile(str(tmp_path / 'recipe.py'))
    alone.load_base = str(tmp_path / 'not-here' / 'model.safetensors')
    model = get_model(alone, pretrained=str(single))
    assert model.llm.config.vocab_size == rows
    media = tmp_path / 'data' / 'media' / ('test_1.jpg' if images else 'test_1.mp4')
    result = inference_model(model, str(media), run['test_1']['prompt'].split('\n', 1)[1]
                             .rsplit(' ASSISTANT:', 1)[0])
    assert result['pred_scores'] == pytest.approx(run['test_1']['pred_scores'], abs=1e-5)
