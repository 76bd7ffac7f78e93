"""The QLoRA recipes: each says what its name says, keeps the config contract the memory
estimator reads, differs from its LoRA sibling only by the 4-bit LLM and the batch split, is in
the model zoo, and (UCF101) builds at 7B on the meta device with the right modules to quantize
and to train. Needs no bitsandbytes (nothing is quantized here)."""
import re
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config

from mmllava.apis import list_models
from mmllava.models.qlora import quantization_targets
from mmllava.registry import MODELS
from mmllava.utils import register_all_modules

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / 'configs' / 'llava_action'
CONTRACT = dict(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype='bfloat16')
QLORA_CONFIGS = sorted(ROOT.glob('configs/**/*_qlora*.py'))
ACTION_RECIPES = sorted(p.stem for p in ACTION.glob('llava-7b-v1.5_qlora-*.py'))
NAME = re.compile(r'llava-7b-v1\.5_qlora-(\d+)xb(\d+)-accum(\d+)-(\d+)e_([a-z0-9]+)'
                  r'(-split\d)?(-\d+f)?$')


def load(path):
    register_all_modules()
    return Config.fromfile(str(path))


def lora_sibling(name):
    """The 8-GPU LoRA recipe of the same data and schedule."""
    _, _, _, epochs, dataset, split, frames = NAME.match(name).groups()
    matches = [p for p in ACTION.glob(f'llava-7b-v1.5_lora-8xb*-{epochs}e_{dataset}'
                                      f'{split or ""}{frames or ""}.py')]
    assert len(matches) == 1, name
    return load(matches[0])


def test_there_are_qlora_recipes():
    names = {p.stem for p in QLORA_CONFIGS}
    assert {'llava-7b-v1.5_qlora', 'llava-tiny_qlora'} <= names
    assert {NAME.match(n).group(5) for n in ACTION_RECIPES} == {'ucf101', 'hmdb51',
                                                                 'stanford40'}


@pytest.mark.parametrize('path', QLORA_CONFIGS, ids=lambda p: p.stem)
def test_qlora_contract(path):
    """What the estimator and the runner read: 4-bit NF4 LLM, LoRA, frozen LLM and tower,
    trained projector, bf16, gradient checkpointing, no strategy."""
    cfg = load(path)
    model = cfg.model
    assert model.llm.quantization_config == CONTRACT
    assert model.llm.torch_dtype == 'bfloat16' and model.llm.gradient_checkpointing
    assert model.lora and model.freeze_llm
    assert model.get('freeze_vision_encoder', True) and not model.get('freeze_projector')
    assert cfg.optim_wrapper.type == 'BF16OptimWrapper' and 'strategy' not in cfg


@pytest.mark.parametrize('name', ACTION_RECIPES)
def test_action_recipe_says_what_its_name_says(name):
    gpus, batch, accum, epochs, *_ = NAME.match(name).groups()
    cfg = load(ACTION / f'{name}.py')
    loader = cfg.train_dataloader
    assert int(gpus) == 1 and loader.batch_size == loader.sampler.batch_size == int(batch)
    # The LoRA recipes' global batch of 128, on one GPU by accumulation.
    assert int(batch) * int(accum) == 128 == cfg.auto_scale_lr.base_batch_size
    assert cfg.optim_wrapper.accumulative_counts == int(accum)
    assert cfg.train_cfg.max_epochs == int(epochs)
    # Only the 4-bit LLM and the batch split differ from the LoRA sibling.
    sibling = lora_sibling(name)
    assert cfg.model.lora == sibling.model.lora
    assert cfg.optim_wrapper.optimizer == sibling.optim_wrapper.optimizer
    assert cfg.optim_wrapper.paramwise_cfg == sibling.optim_wrapper.paramwise_cfg
    assert cfg.param_scheduler == sibling.param_scheduler
    assert cfg.load_base == sibling.load_base
    for split in ('train_dataloader', 'test_dataloader'):
        assert cfg[split].dataset == sibling[split].dataset
    llm = dict(cfg.model.llm)
    assert {k: v for k, v in llm.items() if k not in ('quantization_config', 'torch_dtype')} \
        == dict(sibling.model.llm)


def test_metafile_lists_the_action_recipes():
    meta = yaml.safe_load((ACTION / 'metafile.yml').read_text())
    entries = {m['Name']: m for m in meta['Models']}
    for name in ACTION_RECIPES:
        entry = entries[name]
        assert entry['Config'] == f'configs/llava_action/{name}.py'
        assert entry['Metadata']['Training Resources'] == '1 GPU (24 GB)'
        assert entry['Metadata']['Batch Size'] == 128 and not entry.get('Results')
        assert name in list_models()


def test_7b_finetune_has_xtuners_hyperparameters():
    """xtuner's llava_vicuna_7b_v15_qlora_..._lora_e1_gpu8_finetune.py, from our finetune."""
    cfg = load(ROOT / 'configs' / 'llava' / 'llava-7b-v1.5_qlora.py')
    finetune = load(ROOT / 'configs' / 'llava' / 'llava-7b-v1.5_finetune.py')
    assert cfg.model.lora == dict(r=512, alpha=256, dropout=0.05, target_modules=None)
    opt = cfg.optim_wrapper
    assert (opt.optimizer.type, opt.optimizer.lr, opt.optimizer.betas,
            opt.optimizer.weight_decay) == ('AdamW', 2e-4, (0.9, 0.999), 0.)
    assert not opt.get('paramwise_cfg', {}).get('projector_lr')  # one lr, projector too
    assert opt.clip_grad == dict(max_norm=1.0) and opt.accumulative_counts == 1
    assert cfg.train_dataloader.batch_size == 16 and cfg.auto_scale_lr.base_batch_size == 128
    assert cfg.train_cfg.max_epochs == 1
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == cosine.begin == 0.03 and cosine.eta_min == 0
    assert cfg.load_base == finetune.load_base
    tokenize = [t for t in cfg.train_dataloader.dataset.pipeline
                if t.type == 'TokenizeConversation'][0]
    assert tokenize.max_length == 2048 and tokenize.num_image_tokens == 576


def test_ucf101_recipe_plan_at_7b_on_meta():
    cfg = load(ACTION / 'llava-7b-v1.5_qlora-1xb4-accum32-3e_ucf101-split1-8f.py')
    with torch.device('meta'):
        model = MODELS.build({**cfg.model, 'tokenizer': None})
    targets = quantization_targets(model)
    assert len(targets) == 32 * 7 and not [t for t in targets if 'lm_head' in t]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('projector.') or 'lora_' in n for n in trainable)
    assert model.llm.get_base_model().model.embed_tokens.weight.dtype == torch.bfloat16
