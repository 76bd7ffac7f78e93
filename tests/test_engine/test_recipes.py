"""The 7B recipes say what the authors ran, and build (on the meta device: no memory)."""
import pytest
import torch
from mmengine.config import Config

from mmllava.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmllava.utils import register_all_modules

NUM_GPUS = 8


def load(name):
    register_all_modules()
    return Config.fromfile(f'configs/llava/{name}.py')


def build_meta(cfg):
    with torch.device('meta'):
        return MODELS.build({**cfg.model, 'tokenizer': None})


@pytest.mark.parametrize('name,template,lr,global_batch', [
    ('llava-7b-v1.5_pretrain', 'plain', 1e-3, 256),
    ('llava-7b-v1.5_finetune', 'vicuna_v1', 2e-5, 128),
    ('llava-7b-v1.5_lora', 'vicuna_v1', 2e-4, 128),
])
def test_recipe_hyperparameters(name, template, lr, global_batch):
    cfg = load(name)
    loader = cfg.train_dataloader
    assert NUM_GPUS * loader.batch_size * cfg.optim_wrapper.accumulative_counts == global_batch
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.weight_decay == 0
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=1)
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and warmup.end == cosine.begin == 0.03
    assert cosine.type == 'CosineAnnealingLR' and cosine.end == 1 and cosine.eta_min == 0
    tokenize = [t for t in loader.dataset.pipeline if t.type == 'TokenizeConversation'][0]
    assert tokenize.template == template and tokenize.max_length == 2048
    assert cfg.model.llm.gradient_checkpointing is True
    pads = any(t.type == 'PadToSquare' for t in loader.dataset.pipeline)
    assert pads == (template == 'vicuna_v1')
    if name != 'llava-7b-v1.5_pretrain':
        assert loader.sampler.type == 'LengthGroupedSampler'
        assert loader.sampler.group_by_modality and loader.sampler.batch_size == loader.batch_size


@pytest.mark.parametrize('name', ['llava-7b-v1.5_pretrain', 'llava-7b-v1.5_lora'])
def test_recipe_trainable_parameters_at_7b(name):
    cfg = load(name)
    model = build_meta(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith('vision_tower') for n in trainable)
    projector = {n for n, _ in model.named_parameters() if n.startswith('projector.')}
    assert projector <= trainable
    if name.endswith('pretrain'):
        assert trainable == projector
        assert sum(model.get_parameter(n).numel() for n in trainable) == 1024 * 4096 + 4096 * \
            4096 + 2 * 4096
        return
    lora = trainable - projector
    assert lora and all('lora_' in n and n.startswith('llm.') for n in lora)
    # r 128 on the 7 linears of 32 layers: A (in x r) and B (r x out).
    per_layer = 128 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    assert sum(model.get_parameter(n).numel() for n in lora) == 32 * per_layer
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor,
        optim_wrapper_cfg={k: v for k, v in cfg.optim_wrapper.items()
                           if k not in ('constructor', 'paramwise_cfg')},
        paramwise_cfg=cfg.optim_wrapper.paramwise_cfg))
    groups = constructor.param_groups(model)
    lrs = {n: g['lr'] for g in groups for n in g['names']}
    assert {lrs[n] for n in projector} == {2e-5} and {lrs[n] for n in lora} == {2e-4}


def test_fsdp_recipe_builds_its_strategy(monkeypatch):
    cfg = load('llava-7b-v1.5_finetune_fsdp')
    from mmengine._strategy import FSDPStrategy

    from mmllava.engine import LlavaFlexibleRunner, LlavaRunner, build_runner
    picked = []
    monkeypatch.setattr(LlavaFlexibleRunner, 'from_cfg', classmethod(
        lambda cls, c: picked.append('flexible')))
    monkeypatch.setattr(LlavaRunner, 'from_cfg', classmethod(lambda cls, c: picked.append('ddp')))
    build_runner(cfg)
    build_runner(load('llava-7b-v1.5_finetune'))
    assert picked == ['flexible', 'ddp']
    strategy = FSDPStrategy(**{k: v for k, v in cfg.strategy.items() if k != 'type'})
    assert strategy.model_wrapper['use_orig_params'] is True
    assert cfg.strategy.type == 'FSDPStrategy'
