"""The NeXT-family action recipes end to end on a tiny mmaction2-format dataset, only the
model swapped for a tiny one of the same family.

LLaVA-Video-7B-Qwen2 and LLaVA-OneVision-0.5B recipes get a tiny OneVision (SigLIP at 384 px /
14 px patches, so 729 tokens a frame pooled to 196 as the recipe counts; Qwen2; byte-level
BPE), LLaVA-NeXT-Video-7B recipes a tiny NeXT-Video (CLIP at 336 px / 14: 576 tokens pooled to
144 on the tower's features; LLaMA), each converted from a llava-hf folder by our tool. The
recipe's datasets, pipelines (16 frames, temporal jitter, its question and template), LoRA,
optimizer, hooks and evaluator run as configured: ``tools/train.py`` for 2 iterations and the
validation (the best checkpoint kept), then ``tools/test.py`` on the test list.
"""
import glob
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_llava import load_script
from fixtures_next import build_next_family
from mmengine.config import Config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs' / 'llava_action'
RECIPES = sorted(p.stem for p in CONFIG_DIR.glob('*.py')
                 if p.stem.startswith(('llava-video-', 'llava-next-video-', 'llava-onevision-')))
LABELS = {'ucf101': ['ApplyEyeMakeup', 'BoxingPunchingBag'],
          'kinetics400': ['air drumming', 'passing American football (in game)'],
          'sthv2': ['Pushing something from left to right',
                    'Pushing something from right to left']}
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=8192)
VISION = {'onevision': dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, image_size=384, patch_size=14),
          'video': dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, image_size=336, patch_size=14)}


def _family(name: str) -> str:
    return 'video' if name.startswith('llava-next-video') else 'onevision'


@pytest.fixture(scope='module')
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp('next-bases')
    return {family: str(build_next_family(family, root, vision=VISION[family], text=TEXT)[2])
            for family in ('onevision', 'video')}


def _write_data(root: Path, dataset: str) -> None:
    from mmllava.utils.video_io import write_mp4
    rng = np.random.default_rng(0)
    (root / 'media').mkdir(parents=True)
    (root / 'label_map.txt').write_text('\n'.join(LABELS[dataset]) + '\n')
    for split, n in (('train', 8), ('test', 4)):
        lines = []
        for i in range(n):
            name = f'{split}_{i}.mp4'
            write_mp4(str(root / 'media' / name),
                      rng.integers(0, 256, (20, 24, 32, 3), dtype=np.uint8))
            lines.append(f'{name} {i % 2}')
        (root / f'{split}.txt').write_text('\n'.join(lines) + '\n')


def _tiny_recipe(name: str, base: str, data: Path) -> Config:
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    tiny = Config.fromfile(str(Path(base) / 'config.py')).model
    cfg.model.vision_encoder.config = tiny.vision_encoder.config
    cfg.model.llm.config = tiny.llm.config
    cfg.model.anyres = tiny.anyres
    cfg.model.data_preprocessor = tiny.data_preprocessor  # the tiny tokenizer's pad id
    cfg.model.tokenizer = base
    cfg.model.generation_cfg = dict(max_new_tokens=4)
    cfg.load_base = str(Path(base) / 'model.safetensors')
    cfg.optim_wrapper.type = 'OptimWrapper'  # fp32 on the CPU
    for split, ann in (('train_dataloader', 'train.txt'), ('val_dataloader', 'test.txt'),
                       ('test_dataloader', 'test.txt')):
        loader = cfg[split]
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(data), ann_file=ann, label_map='label_map.txt',
                              img_prefix='media')
        for step in loader.dataset.pipeline:
            if step.type == 'TokenizeConversation':
                step.tokenizer = base
    for step in cfg.test_pipeline:
        if step.type == 'TokenizeConversation':
            step.tokenizer = base
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].classes = str(data / 'label_map.txt')
    cfg.train_cfg.max_epochs = 1
    warmup, cosine = cfg.param_scheduler
    warmup.update(by_epoch=False, convert_to_iter_based=False, begin=0, end=1)
    cosine.update(by_epoch=False, convert_to_iter_based=False, begin=1, end=2)
    for hook in cfg.custom_hooks:
        if hook.type == 'EvaluateChatHook':
            hook.every_n_iters = 1
    return cfg


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_trains_validates_and_tests(name, bases, tmp_path):
    pytest.importorskip('av')
    dataset = next(d for d in LABELS if f'_{d}' in name)
    family = _family(name)
    cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
    _write_data(tmp_path / 'data', dataset)
    tiny = _tiny_recipe(name, bases[family], tmp_path / 'data')
    tiny.train_dataloader.batch_size = 4  # 8 clips: 2 iterations whatever the recipe's batch
    tiny.train_dataloader.sampler.batch_size = 4
    tiny.dump(str(tmp_path / 'recipe.py'))
    work = tmp_path / 'work'
    load_script('tools/train.py').main([str(tmp_path / 'recipe.py'), '--work-dir', str(work)])
    log = Path(glob.glob(str(work / '*' / '*.log'))[0]).read_text()
    assert 'train dataset: 8 samples; sample 0' in log
    frames = cfg.num_frames
    newline = cfg.model.video_pooling.get('newline', False) \
        if isinstance(cfg.model.video_pooling, dict) else False
    per_frame = 196 if family == 'onevision' else 144
    visual = frames * per_frame + {False: 0, True: 1, 'one_token': 1,
                                   'grid': frames * 14}[newline]
    assert f'<visual x{visual}>' in log
    assert 'Epoch(val) [1]' in log and 'action/top1' in log
    best = glob.glob(str(work / 'best_action_top1_*.safetensors'))
    assert len(best) == 1
    metrics_file = tmp_path / 'metrics.json'
    load_script('tools/test.py').main([
        str(tmp_path / 'recipe.py'), best[0], '--work-dir', str(tmp_path / 'test'),
        '--out-metrics', str(metrics_file), '--no-progress'])
    metrics = json.loads(metrics_file.read_text())
    assert metrics['action/num_samples'] == 4 and metrics['invalid_samples'] == 0
    assert 0 <= metrics['action/top1'] <= 100
