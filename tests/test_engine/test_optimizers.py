"""Projector learning-rate group, no decay on biases and norms, bf16 autocast on the CPU."""
import pytest
import torch
from mmengine.config import Config

from mmllava.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from mmllava.utils import register_all_modules


def build(config, **model):
    register_all_modules()
    cfg = Config.fromfile(config)
    cfg.model.update(model)
    torch.manual_seed(0)
    return MODELS.build(cfg.model), cfg


def groups_of(model, optim_wrapper):
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LlavaOptimWrapperConstructor', optim_wrapper_cfg=optim_wrapper,
        paramwise_cfg=optim_wrapper.pop('paramwise_cfg', None)))
    wrapper = constructor(model)
    names = {id(p): n for n, p in model.named_parameters()}
    return wrapper, [(g['lr'], g['weight_decay'], {names[id(p)] for p in g['params']})
                     for g in wrapper.optimizer.param_groups]


def test_projector_lr_and_no_decay_groups():
    model, _ = build('configs/llava/llava-tiny_finetune.py')
    _, groups = groups_of(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.1),
        paramwise_cfg=dict(projector_lr=2e-5)))
    by_name = {n: (lr, wd) for lr, wd, names in groups for n in names}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_name) == trainable  # frozen vision tower left out
    assert not any(n.startswith('vision_tower') for n in by_name)
    assert by_name['projector.0.weight'] == (2e-5, 0.1)
    assert by_name['projector.0.bias'] == (2e-5, 0.)
    assert by_name['llm.model.layers.0.self_attn.q_proj.weight'] == (2e-4, 0.1)
    assert by_name['llm.model.layers.0.input_layernorm.weight'] == (2e-4, 0.)
    assert by_name['llm.model.norm.weight'] == (2e-4, 0.)
    assert by_name['llm.lm_head.weight'] == (2e-4, 0.1)
    assert len(groups) == 4


def test_pretrain_optimizes_projector_only():
    model, _ = build('configs/llava/llava-tiny_pretrain.py')
    _, groups = groups_of(model, dict(type='OptimWrapper',
                                      optimizer=dict(type='AdamW', lr=1e-3)))
    names = set().union(*(g[2] for g in groups))
    assert names == {n for n, _ in model.named_parameters() if n.startswith('projector.')}


def test_nothing_trainable_is_an_error():
    model, _ = build('configs/llava/llava-tiny_pretrain.py', freeze_projector=True)
    with pytest.raises(ValueError, match='no trainable parameter'):
        groups_of(model, dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))


def test_bf16_wrapper_autocasts_on_cpu_and_keeps_fp32_master_weights():
    model, _ = build('configs/llava/llava-tiny_finetune.py')
    wrapper, _ = groups_of(model, dict(type='BF16OptimWrapper',
                                       optimizer=dict(type='AdamW', lr=1e-3)))
    ids = torch.randint(3, 1000, (1, 8))
    with wrapper.optim_context(model):
        logits = model(dict(input_ids=ids), mode='tensor')
        loss = model.loss(ids, ids)['loss']
    assert logits.dtype == torch.bfloat16
    before = model.llm.lm_head.weight.detach().clone()
    wrapper.update_params(loss)
    assert model.llm.lm_head.weight.dtype == torch.float32
    assert not torch.equal(before, model.llm.lm_head.weight)
