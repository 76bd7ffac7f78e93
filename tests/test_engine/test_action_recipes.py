"""configs/llava_action: the 7B action LoRA recipes load, say what their names say, build
their datasets (on tiny fake lists) and run their real pipelines, and are in the model zoo."""
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from PIL import Image

from mmllava.apis import list_models
from mmllava.conversation import IMAGE_TOKEN_INDEX
from mmllava.registry import DATASETS, MODELS
from mmllava.utils import register_all_modules
from mmllava.utils.video_io import write_mp4

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / 'configs' / 'llava_action'
TOKENIZER = str(ROOT / 'resources' / 'tiny-tokenizer' / 'tokenizer.model')
# The LoRA recipes (8 GPUs); the QLoRA ones (1 GPU, llava-7b-v1.5_qlora-*) are checked in
# tests/test_engine/test_qlora_recipes.py.
RECIPES = sorted(p.stem for p in CONFIG_DIR.glob('llava-7b-v1.5_lora-*.py'))
# {gpus}x b{per-GPU batch} [-accum{steps}] - {epochs}e _ {dataset}[-{split}] [-{frames}f]
NAME = re.compile(r'llava-7b-v1\.5_lora-(\d+)xb(\d+)(?:-accum(\d+))?-(\d+)e_([a-z0-9]+)'
                  r'(-split\d)?(-(\d+)f)?$')
DATASET_NAMES = {'ucf101', 'hmdb51', 'kinetics400', 'sthv2', 'stanford40'}


def load(name):
    register_all_modules()
    return Config.fromfile(str(CONFIG_DIR / f'{name}.py'))


def test_every_dataset_has_a_recipe():
    assert {NAME.match(n).group(5) for n in RECIPES} == DATASET_NAMES


def leaf_datasets(ds):
    """The datasets inside mmengine's wrappers (ConcatDataset, RepeatDataset)."""
    if 'datasets' in ds:
        return [leaf for part in ds.datasets for leaf in leaf_datasets(part)]
    return leaf_datasets(ds.dataset) if 'dataset' in ds else [ds]


@pytest.mark.parametrize('path', sorted(CONFIG_DIR.glob('*.py')), ids=lambda p: p.stem)
def test_every_config_loads(path):
    cfg = Config.fromfile(str(path))
    assert cfg.model.type == 'Llava'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if split not in cfg:  # the MoCap recipes validate through tools/test.py only
            continue
        leaves = leaf_datasets(cfg[split].dataset)
        assert leaves and all(leaf.type == 'ActionListDataset' and leaf.pipeline
                              for leaf in leaves)


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_says_what_its_name_says(name):
    gpus, batch, accum, epochs, dataset, _, _, frames = NAME.match(name).groups()
    cfg = load(name)
    loader = cfg.train_dataloader
    accum = int(accum or 1)
    assert int(gpus) == 8 and loader.batch_size == loader.sampler.batch_size == int(batch)
    # The authors' finetune_task_lora.sh: a global batch of 128 at lr 2e-4.
    assert 8 * int(batch) * accum == 128
    assert cfg.optim_wrapper.accumulative_counts == accum
    assert cfg.auto_scale_lr.base_batch_size == 128
    epochs = int(epochs)
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=1)
    # Warmup over the first 3% of the run, then cosine to 0 at its very end.
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == pytest.approx(0.03 * epochs)
    assert cosine.end == epochs and cosine.eta_min == 0
    # The LoRA recipe of configs/llava/llava-7b-v1.5_lora.py.
    assert cfg.model.lora == dict(r=128, alpha=256, dropout=0.05, target_modules=None)
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.optim_wrapper.paramwise_cfg.projector_lr == 2e-5
    assert cfg.model.freeze_llm and cfg.model.freeze_vision_encoder
    assert not cfg.model.freeze_projector
    # Converted from llava-hf or the original: the folder's tokenizer.model or tokenizer.json.
    assert cfg.load_base == 'checkpoints/llava-7b-v1.5/model.safetensors'
    assert cfg.model.tokenizer == 'checkpoints/llava-7b-v1.5'
    assert cfg.model.video_pooling == 'avgpool2x2'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[split].dataset
        assert ds.type == 'ActionListDataset'
        assert ds.data_root == f'data/{dataset}'
        load_visuals = ds.pipeline[0]
        assert load_visuals.type == 'LoadVisuals' and load_visuals.num_image_tokens == 576
        # Temporal jitter in training only.
        assert load_visuals.get('temporal_jitter', False) == (split == 'train_dataloader')
        if frames:
            assert ds.list_format == 'videos'
            assert load_visuals.num_frames == int(frames)
            # Token counts must match the model's pooling.
            assert load_visuals.video_pooling == cfg.model.video_pooling
        else:
            assert ds.list_format == 'images'
        tokenize = [t for t in ds.pipeline if t.type == 'TokenizeConversation'][0]
        assert tokenize.template == 'vicuna_v1'
        assert tokenize.tokenizer == 'checkpoints/llava-7b-v1.5'
        assert tokenize.get('add_generation_prompt', False) == (split != 'train_dataloader')
    # Validation every epoch is the test set-up; the best top-1 checkpoint is kept.
    assert cfg.val_dataloader == cfg.test_dataloader and cfg.val_evaluator == cfg.test_evaluator
    assert cfg.val_cfg == dict(type='ValLoop')
    assert cfg.test_dataloader.dataset.test_mode is True
    checkpoint = cfg.default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule, checkpoint.by_epoch) == ('action/top1',
                                                                          'greater', True)
    hooks = [h.type for h in cfg.custom_hooks]
    assert {'TrainableOnlyCheckpointHook', 'DatasetInfoHook', 'EvaluateChatHook'} <= set(hooks)
    assert cfg.test_evaluator.type == 'ActionAccuracy'
    # One label map for the datasets; the metric and the model take the test dataset's.
    assert 'classes' not in cfg.test_evaluator and 'class_names' not in cfg.model
    assert cfg.test_dataloader.dataset.label_map == cfg.train_dataloader.dataset.label_map
    assert cfg.test_dataloader.dataset.get('rank_classes', True)
    # Label sets too long to list in a 2048-token prompt ask the open question.
    mode = 'open' if dataset in ('kinetics400', 'sthv2') else 'closed'
    assert cfg.train_dataloader.dataset.question_mode == mode


def _fake_data(root: Path, list_format: str):
    """Two samples in the layout the config expects, relative to ``root``."""
    rng = np.random.default_rng(0)
    (root / 'label_map.txt').write_text('walking\nrunning\n')
    if list_format == 'images':
        (root / 'pics').mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(
                root / 'pics' / f'{i}.jpg')
        (root / 'list.txt').write_text('0.jpg 0\n1.jpg 1\n')
    else:
        (root / 'pics').mkdir()
        for i in range(2):
            write_mp4(str(root / 'pics' / f'{i}.mp4'),
                      rng.integers(0, 256, (10, 32, 48, 3), dtype=np.uint8))
        (root / 'list.txt').write_text('0.mp4 0\n1.mp4 1\n')


@pytest.mark.parametrize('name', RECIPES)
def test_recipe_builds_its_datasets_and_runs_the_pipeline(name, tmp_path):
    pytest.importorskip('av')
    cfg = load(name)
    frames = NAME.match(name).group(8)
    _fake_data(tmp_path, 'videos' if frames else 'images')
    for split in ('train_dataloader', 'test_dataloader'):
        ds_cfg = cfg[split].dataset
        # The tiny tokenizer instead of the 7B one (not on disk here); all else as configured.
        for t in ds_cfg.pipeline:
            if t.type == 'TokenizeConversation':
                t.tokenizer = TOKENIZER
        ds_cfg.update(data_root=str(tmp_path), ann_file='list.txt', label_map='label_map.txt',
                      img_prefix='pics')
        dataset = DATASETS.build(ds_cfg)
        assert len(dataset) == 2 and dataset.metainfo['classes'] == ['walking', 'running']
        out = dataset[1]
        n_tokens = int((out['inputs']['input_ids'] == IMAGE_TOKEN_INDEX).sum())
        if frames:  # 8 frames x 576 tokens pooled 2 x 2 to 144
            assert tuple(out['inputs']['images'].shape) == (int(frames), 3, 336, 336)
            assert n_tokens == int(frames) * 144
        else:
            assert tuple(out['inputs']['images'].shape) == (1, 3, 336, 336)
            assert n_tokens == 576
        if split == 'train_dataloader':
            assert out['data_samples'].prompt.endswith('ASSISTANT: running</s>')
        else:
            assert out['data_samples'].prompt.endswith('ASSISTANT:')
            assert int(out['data_samples'].gt_label) == 1


def test_recipe_model_builds_at_7b_on_meta():
    cfg = load('llava-7b-v1.5_lora-8xb4-accum4-3e_ucf101-split1-8f')
    with torch.device('meta'):
        model = MODELS.build({**cfg.model, 'tokenizer': None})
    assert type(model.video_pooling).__name__ == 'AvgPool2x2FramePooling'
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('projector.') or 'lora_' in n for n in trainable)


def test_metafile_lists_every_recipe_and_the_zoo_reads_it():
    index = yaml.safe_load((ROOT / 'model-index.yml').read_text())
    assert 'configs/llava_action/metafile.yml' in index['Import']
    meta = yaml.safe_load((CONFIG_DIR / 'metafile.yml').read_text())
    entries = {m['Name']: m for m in meta['Models']}
    assert set(RECIPES) <= set(entries)
    for name in RECIPES:
        assert entries[name]['Config'] == f'configs/llava_action/{name}.py'
        assert not entries[name].get('Results')  # nothing measured here (no GPU)
        assert name in list_models()


NEXT_RECIPES = sorted(p.stem for p in CONFIG_DIR.glob('*.py') if p.stem.startswith(
    ('llava-video-', 'llava-next-video-', 'llava-onevision-')))
NEXT_NAME = re.compile(r'(llava-video-7b-qwen2|llava-next-video-7b|llava-onevision-qwen2-0\.5b-ov)'
                       r'_lora-(\d+)xb(\d+)-accum(\d+)-(\d+)e_([a-z0-9]+)(-split\d)?-(\d+)f$')


@pytest.mark.parametrize('name', NEXT_RECIPES)
def test_next_family_recipe_says_what_its_name_says(name):
    model, gpus, batch, accum, epochs, dataset, _, frames = NEXT_NAME.match(name).groups()
    cfg = load(name)
    loader = cfg.train_dataloader
    assert loader.batch_size == loader.sampler.batch_size == int(batch)
    assert cfg.optim_wrapper.accumulative_counts == int(accum)
    assert cfg.auto_scale_lr.base_batch_size == int(gpus) * int(batch) * int(accum)
    assert cfg.train_cfg.max_epochs == int(epochs)
    assert cfg.num_frames == int(frames)
    assert dataset in {'ucf101', 'kinetics400', 'sthv2'}
    for pipeline in (loader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline):
        load_step = pipeline[0]
        assert load_step.type == 'LoadVisuals' and load_step.num_frames == int(frames)
        # The loader counts the tokens the model pools them to.
        assert load_step.video_pooling == cfg.model.video_pooling
    assert loader.dataset.pipeline[0].temporal_jitter
    assert cfg.model.freeze_vision_encoder and cfg.model.lora.r == 128
    with torch.device('meta'):
        built = MODELS.build({**cfg.model, 'tokenizer': None})
    trainable = {n for n, p in built.named_parameters() if p.requires_grad}
    assert all(n.startswith('projector.') or 'lora_' in n or n == 'image_newline'
               for n in trainable)
    # Every NeXT-family model has the learned newline (anyres), trained with the projector.
    assert 'image_newline' in trainable


@pytest.mark.parametrize('stage', ['llava-tiny-ov_mocap-actions_pretrain',
                                   'llava-tiny-ov_mocap-actions'])
def test_onevision_style_mocap_model(stage):
    """SigLIP-style tower, Qwen2-style LLM, bilinear pooling with one newline a clip; the
    loaders count what the model gives (8 frames x 2 x 2 + 1)."""
    from mmllava.structures import num_visual_tokens
    cfg = load(stage)
    model = MODELS.build({**cfg.model, 'tokenizer': None})
    assert type(model.vision_tower).__name__ == 'HFSiglipVisionEncoder'
    assert model.llm.config.model_type == 'qwen2'
    leaves = leaf_datasets(cfg.train_dataloader.dataset)
    assert all(leaf.pipeline[0].video_pooling == cfg.model.video_pooling for leaf in leaves)
    with torch.no_grad():
        tokens = model.encode_visuals(torch.randn(8, 3, 64, 64), [8])
    assert len(tokens) == num_visual_tokens(leaves[0].pipeline[0].video_pooling, 8, 16) == 33
