"""The NeXT-family LoRA instruction-tuning recipes end to end, only the model swapped for a
tiny one of the same family.

Each recipe of ``configs/llava_next/*_lora.py`` and ``configs/llava_onevision/*_lora.py``
trains from a tiny llava-hf stand-in of its family converted by our tool: LLaVA-1.6 Vicuna
(CLIP + LLaMA) and Mistral (CLIP + Mistral), NeXT-Video (CLIP + LLaMA, clips pooled on the
tower's features), OneVision / LLaVA-Video (SigLIP + Qwen2, byte-level BPE). The towers keep the
recipes' tile sizes (336 px / 14 px patches, 384 / 14), so the recipe's own ``anyres`` (the
model's and its pipeline's) is the one the converter writes for that checkpoint, and images of
several aspect ratios are tiled, clips pooled and sequences counted as at 7B. The recipe's
dataset, pipeline, LoRA, freezing, optimizer and hooks run as configured through
``tools/train.py`` for 2 iterations; the checkpoint holds the trainable parameters only;
``merge_lora.py`` merges them into the base and the merged model answers.
"""
import glob
from pathlib import Path

import numpy as np
import pytest
from fixtures_llava import load_script
from fixtures_next import build_next_family
from mmengine.config import Config
from PIL import Image

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(str(p.relative_to(ROOT / 'configs'))[:-3]
                 for d in ('llava_next', 'llava_onevision')
                 for p in (ROOT / 'configs' / d).glob('*_lora.py'))
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=16384)
TOWER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
             patch_size=14)
SIZES = [(500, 200), (200, 500), (336, 336), (9, 12)]  # wide, tall, square, tiny (w, h)


def _family(recipe: str) -> str:
    name = recipe.split('/')[1]
    if name.startswith('llava-v1.6-mistral'):
        return 'mistral'
    if name.startswith('llava-v1.6'):
        return 'next'
    return 'video' if name.startswith('llava-next-video') else 'onevision'


@pytest.fixture(scope='module')
def bases(tmp_path_factory):
    """One tiny converted base per family, built on the first recipe that needs it."""
    root, built = tmp_path_factory.mktemp('next-lora-bases'), {}

    def get(family: str, anyres: dict) -> Path:
        if family not in built:
            top = dict(image_grid_pinpoints=anyres['image_grid_pinpoints'])
            if 'max_num_tiles' in anyres:
                top['vision_aspect_ratio'] = f"anyres_max_{anyres['max_num_tiles']}"
            text = dict(TEXT, model_type='mistral', sliding_window=None) \
                if family == 'mistral' else TEXT
            vision = dict(TOWER, image_size=anyres['tile_size'])
            (root / family).mkdir()
            built[family] = build_next_family('next' if family == 'mistral' else family,
                                              root / family, vision=vision, text=text,
                                              **top)[2]
        return built[family]
    return get


def _write_data(root: Path, clips: bool) -> list:
    """8 LLaVA-JSON records: one image of each aspect ratio, twice; with ``clips``, two of
    them become a clip, one two images, one an image and a clip."""
    from mmllava.utils.video_io import write_mp4
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f'{i}.png')
    write_mp4(str(root / 'clip.mp4'), rng.integers(0, 256, (20, 24, 32, 3), dtype=np.uint8))

    def record(i, question, answer, **visuals):
        return dict(id=str(i), conversations=[dict(value=question, **{'from': 'human'}),
                                              dict(value=answer, **{'from': 'gpt'})], **visuals)
    records = [record(i, '<image>\nWhat is the person doing?', 'running', image=f'{i % 4}.png')
               for i in range(8)]
    if clips:
        records[4] = record(4, '<video>\nWhat happens?', 'a person waves', video='clip.mp4')
        records[5] = record(5, '<video>\nDescribe it.', 'someone jumps', video='clip.mp4')
        records[6] = record(6, '<image>\n<image>\nSame person?', 'yes',
                            image=['0.png', '1.png'])
        records[7] = record(7, '<image>\n<video>\nDoes the clip show the image?', 'no',
                            image='2.png', video='clip.mp4')
    import json
    (root / 'train.json').write_text(json.dumps(records))
    return records


def _tiny_recipe(recipe: str, base: Path, data: Path) -> Config:
    cfg = Config.fromfile(str(ROOT / 'configs' / f'{recipe}.py'))
    tiny = Config.fromfile(str(base / 'config.py')).model
    for key in ('vision_encoder', 'llm'):
        cfg.model[key].config = tiny[key].config
    cfg.model.data_preprocessor = tiny.data_preprocessor  # the tiny tokenizer's pad id
    cfg.model.tokenizer = str(base)
    cfg.model.generation_cfg = dict(max_new_tokens=4)
    cfg.load_base = str(base / 'model.safetensors')
    cfg.optim_wrapper.type = 'OptimWrapper'  # fp32 on the CPU
    loader = cfg.train_dataloader
    loader.update(num_workers=0, persistent_workers=False)
    loader.dataset.data_root = str(data)
    for step in loader.dataset.pipeline:
        if step.type == 'TokenizeConversation':
            step.tokenizer = str(base)
    warmup, cosine = cfg.param_scheduler
    # Warm up over both iterations: the one optimizer step (the last iteration, accumulated
    # steps flushed) runs at about half the recipe's lr.
    warmup.update(by_epoch=False, convert_to_iter_based=False, begin=0, end=2)
    cosine.update(by_epoch=False, convert_to_iter_based=False, begin=2, end=3)
    return cfg


@pytest.mark.parametrize('recipe', RECIPES)
def test_lora_recipe_trains_merges_and_answers(recipe, bases, tmp_path):
    from safetensors.torch import load_file

    from mmllava.apis import get_model, inference_model
    family = _family(recipe)
    cfg = Config.fromfile(str(ROOT / 'configs' / f'{recipe}.py'))
    # The recipe as a user runs it: the tower frozen, LoRA on the LLM, from converted weights.
    assert cfg.model.freeze_vision_encoder and cfg.model.freeze_llm
    assert cfg.model.lora.r == 128 and not cfg.model.freeze_projector
    assert cfg.load_base.endswith('model.safetensors')
    base = bases(family, cfg.model.anyres)
    # The recipe's tiling is what the converter writes for a checkpoint of its family.
    assert Config.fromfile(str(base / 'config.py')).model.anyres == cfg.model.anyres
    if family in ('video', 'onevision'):  # clips trained as the model reads them
        train_load, test_load = cfg.train_dataloader.dataset.pipeline[0], cfg.test_pipeline[0]
        assert train_load.video_pooling == cfg.model.video_pooling
        assert train_load.num_frames == test_load.num_frames == cfg.num_frames
    records = _write_data(tmp_path / 'data', clips=family in ('video', 'onevision'))
    _tiny_recipe(recipe, base, tmp_path / 'data').dump(str(tmp_path / 'recipe.py'))
    work = tmp_path / 'work'
    load_script('tools/train.py').main([str(tmp_path / 'recipe.py'), '--work-dir', str(work)])
    log = Path(glob.glob(str(work / '*' / '*.log'))[0]).read_text()
    assert f'train dataset: {len(records)} samples; sample 0' in log
    assert 'Iter(train) [2/2]' in log or 'Epoch(train) [1][2/2]' in log
    # Sample 0 is the wide image, tiled: more than one tile's tokens.
    per_tile = (cfg.model.anyres.tile_size // 14) ** 2
    shown = int(log.split('<visual x', 1)[1].split('>', 1)[0])
    assert shown > 2 * per_tile

    ckpt = glob.glob(str(work / 'iter_2.safetensors'))
    assert len(ckpt) == 1, sorted(p.name for p in work.iterdir())
    saved = load_file(ckpt[0])
    assert any('lora_A' in k for k in saved) and any('image_newline' in k for k in saved)
    assert all('lora_' in k or k.startswith(('projector.', 'image_newline')) for k in saved), \
        sorted(k for k in saved if 'lora_' not in k)[:5]
    lora_b = [v for k, v in saved.items() if 'lora_B' in k]  # zeros before the step
    assert lora_b and all(v.abs().max() > 1e-5 for v in lora_b)

    merged = tmp_path / 'merged.safetensors'
    load_script('tools/model_converters/merge_lora.py').main(
        [str(tmp_path / 'recipe.py'), ckpt[0], str(merged)])
    plain = Config.fromfile(str(tmp_path / 'recipe.py'))
    plain.model.lora = None
    model = get_model(plain, pretrained=str(merged))
    result = inference_model(model, str(tmp_path / 'data' / '0.png'), 'What is the person doing?')
    assert isinstance(result['pred_answer'], str) and result['prompt'].count('<image>') == 1
    if family in ('video', 'onevision'):
        result = inference_model(model, str(tmp_path / 'data' / 'clip.mp4'), 'What happens?')
        assert result['prompt'].count('<video>') == 1
