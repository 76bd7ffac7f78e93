"""FSDP and DeepSpeed: the FlexibleRunner loads load_base before the strategy wraps the model,
the ZeRO recipes map to the dict DeepSpeed receives (as the authors' JSON files), and FSDP is
given the CPU device without CUDA. DeepSpeed itself is needed only to build its strategy
object; the mapping is checked without it."""
import copy
import importlib.util
import json

import pytest
import torch
from mmengine.config import Config

from mmllava.engine import LlavaFlexibleRunner, StateDictMismatchError, save_weights
from mmllava.engine.strategies import (
    deepspeed_config,
    layer_name_wrap_policy,
    prepare_strategy_cfg,
)
from mmllava.registry import MODELS
from mmllava.utils import register_all_modules

HAS_DEEPSPEED = importlib.util.find_spec('deepspeed') is not None
H = 4096  # the 7B LLM's hidden size
# haotian-liu/LLaVA scripts/zero3.json (commit defced79), the file of scripts/v1_5/finetune.sh.
AUTHORS_ZERO3 = {
    'fp16': {'enabled': 'auto', 'loss_scale': 0, 'loss_scale_window': 1000,
             'initial_scale_power': 16, 'hysteresis': 2, 'min_loss_scale': 1},
    'bf16': {'enabled': 'auto'},
    'train_micro_batch_size_per_gpu': 'auto', 'train_batch_size': 'auto',
    'gradient_accumulation_steps': 'auto',
    'zero_optimization': {
        'stage': 3, 'overlap_comm': True, 'contiguous_gradients': True, 'sub_group_size': 1e9,
        'reduce_bucket_size': 'auto', 'stage3_prefetch_bucket_size': 'auto',
        'stage3_param_persistence_threshold': 'auto', 'stage3_max_live_parameters': 1e9,
        'stage3_max_reuse_distance': 1e9, 'stage3_gather_16bit_weights_on_model_save': True}}


def load(name):
    register_all_modules()
    return Config.fromfile(f'configs/llava/{name}.py')


@pytest.mark.parametrize('name,stage,offload,clip', [
    ('llava-7b-v1.5_finetune_zero2', 2, False, 1.0),
    ('llava-7b-v1.5_finetune_zero3', 3, False, 1.0),
    ('llava-7b-v1.5_finetune_zero3_offload', 3, True, 1.0),
])
def test_zero_recipes_map_to_deepspeed(name, stage, offload, clip):
    cfg = load(name)
    ds = deepspeed_config(cfg)
    zero = ds['zero_optimization']
    assert cfg.strategy.type == 'DeepSpeedStrategy'
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert zero['stage'] == stage and ds['bf16'] == {'enabled': True} and 'fp16' not in ds
    assert ('offload_optimizer' in zero) == ('offload_param' in zero) == offload
    if offload:
        assert zero['offload_optimizer'] == zero['offload_param'] == dict(device='cpu',
                                                                          pin_memory=True)
        assert cfg.optim_wrapper.optimizer.type == 'DeepSpeedCPUAdamW'
    assert ds['gradient_clipping'] == clip  # DeepSpeed's default, under the authors' JSON
    # Micro batch and accumulation are the recipe's: 8 GPUs x 16 x 1 = the authors' 128.
    assert ds['train_micro_batch_size_per_gpu'] == cfg.train_dataloader.batch_size == 16
    assert ds['gradient_accumulation_steps'] == cfg.optim_wrapper.accumulative_counts == 1
    assert zero['reduce_bucket_size'] == H * H
    if stage == 3:
        assert zero['stage3_prefetch_bucket_size'] == int(0.9 * H * H)
        assert zero['stage3_param_persistence_threshold'] == 10 * H
    assert 'auto' not in json.dumps(ds)
    assert cfg.model.llm.gradient_checkpointing is True and cfg.load_base


def test_zero3_recipe_is_the_authors_json(tmp_path):
    """The authors' zero3.json given as the strategy's config resolves to the recipe's dict."""
    path = tmp_path / 'zero3.json'
    path.write_text(json.dumps(AUTHORS_ZERO3))
    cfg = load('llava-7b-v1.5_finetune_zero3')
    theirs = copy.deepcopy(cfg)
    theirs.strategy = dict(type='DeepSpeedStrategy', config=str(path))
    assert deepspeed_config(theirs) == deepspeed_config(cfg)


def test_mapping_follows_the_run_and_refuses_contradictions():
    cfg = load('llava-7b-v1.5_finetune_zero3')
    cfg.merge_from_dict({'train_dataloader.batch_size': 4, 'optim_wrapper.accumulative_counts': 4,
                         'optim_wrapper.clip_grad': dict(max_norm=0.5)})
    ds = deepspeed_config(cfg)
    assert (ds['train_micro_batch_size_per_gpu'], ds['gradient_accumulation_steps'],
            ds['gradient_clipping']) == (4, 4, 0.5)
    unclipped = copy.deepcopy(cfg)
    unclipped.optim_wrapper.pop('clip_grad')
    assert deepspeed_config(unclipped)['gradient_clipping'] == 0.0  # not DeepSpeed's 1.0
    bad = copy.deepcopy(cfg)
    bad.strategy.gradient_accumulation_steps = 2
    with pytest.raises(ValueError, match='accumulative_counts'):
        deepspeed_config(bad)
    bad = copy.deepcopy(cfg)
    bad.optim_wrapper.clip_grad = dict(type='value', clip_value=1.0)
    with pytest.raises(ValueError, match='L2 norm'):
        deepspeed_config(bad)
    bad = copy.deepcopy(cfg)
    bad.strategy.zero_optimization.sub_group_size = 'auto'
    with pytest.raises(ValueError, match='sub_group_size'):
        deepspeed_config(bad)


def test_prepare_leaves_what_deepspeed_optim_wrapper_takes():
    from mmengine._strategy.deepspeed import DeepSpeedOptimWrapper

    from mmllava.registry import OPTIM_WRAPPER_CONSTRUCTORS
    cfg = load('llava-7b-v1.5_finetune_zero3')
    cfg.optim_wrapper.accumulative_counts = 2
    expected = deepspeed_config(cfg)
    prepare_strategy_cfg(cfg)
    assert {k for k in cfg.strategy if k not in ('type', 'config')} == set()
    assert cfg.strategy.config == {k: v for k, v in expected.items() if k != 'steps_per_print'}
    assert 'accumulative_counts' not in cfg.optim_wrapper
    # It builds (with accumulative_counts, DeepSpeedOptimWrapper(...) raises a TypeError).
    model = torch.nn.Linear(2, 2)
    model.projector = torch.nn.Linear(2, 2)
    wrapper = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor, optim_wrapper_cfg={
            k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}))(model)
    assert isinstance(wrapper, DeepSpeedOptimWrapper)
    other = load('llava-7b-v1.5_finetune_zero3')
    other.optim_wrapper.type = 'BF16OptimWrapper'
    with pytest.raises(ValueError, match='DeepSpeedOptimWrapper'):
        prepare_strategy_cfg(other)


@pytest.mark.skipif(not HAS_DEEPSPEED, reason='deepspeed is not installed (an optional extra '
                    'for GPU machines): the dict it would receive is checked above')
def test_deepspeed_strategy_object_receives_the_mapping(tmp_path):
    from mmengine._strategy import DeepSpeedStrategy
    from mmengine.registry import OPTIMIZERS
    cfg = load('llava-7b-v1.5_finetune_zero3_offload')
    expected = deepspeed_config(cfg)
    prepare_strategy_cfg(cfg)  # applies compat.deepspeed_without_onebit
    for _ in range(2):  # twice: registering DeepSpeed's optimizers again is no error
        strategy = DeepSpeedStrategy(**{k: v for k, v in cfg.strategy.items() if k != 'type'},
                                     work_dir=str(tmp_path))
        assert strategy.config == expected
    assert OPTIMIZERS.get('DeepSpeedCPUAdam') is not None


def test_fsdp_is_given_the_cpu_without_cuda(monkeypatch):
    from mmllava.utils import compat
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    cfg = load('llava-7b-v1.5_finetune_fsdp')
    prepare_strategy_cfg(cfg)
    assert 'device_id' not in cfg.strategy.model_wrapper
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    prepare_strategy_cfg(cfg)
    assert cfg.strategy.model_wrapper.device_id == 'cpu'
    bare = dict(type='FSDPStrategy', model_wrapper=None)
    compat.fsdp_on_cpu_without_cuda(bare)
    assert bare['model_wrapper'] == {'device_id': 'cpu'}


def test_fsdp_recipe_wraps_each_decoder_and_encoder_layer():
    cfg = load('llava-7b-v1.5_finetune_fsdp')
    policy = dict(cfg.strategy.model_wrapper.auto_wrap_policy)
    assert policy.pop('type') == 'mmllava.engine.strategies.layer_name_wrap_policy'
    assert cfg.strategy.model_wrapper.sharding_strategy == 'FULL_SHARD'
    with torch.device('meta'):
        model = MODELS.build({**cfg.model, 'tokenizer': None})
    wrapped = [type(m).__name__ for m in model.modules()
               if layer_name_wrap_policy(m, False, 0, **policy)]
    assert wrapped.count('LlamaDecoderLayer') == 32 and wrapped.count('CLIPEncoderLayer') == 24
    assert len(wrapped) == 56
    assert layer_name_wrap_policy(model, True, 0, **policy)  # recurses into the model


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A FlexibleRunner on the tiny model (single device), and base weights no init gives."""
    register_all_modules()
    cfg = Config.fromfile('configs/llava/llava-tiny_finetune.py')
    torch.manual_seed(7)
    state = {k: v + 0.25 if v.is_floating_point() else v
             for k, v in MODELS.build(cfg.model).state_dict().items()}
    cfg.update(strategy=dict(type='SingleDeviceStrategy'),
               work_dir=str(tmp_path_factory.mktemp('flexible')))
    # Its environment log and config dump format the whole config with yapf (seconds).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LlavaFlexibleRunner, '_log_env', lambda self: None)
        mp.setattr(LlavaFlexibleRunner, 'dump_config', lambda self: None)
        runner = LlavaFlexibleRunner.from_cfg(cfg)
    return runner, state


def prepared_model(tiny, tmp_path, state):
    """``state`` as load_base; a strategy of the runner's builds and prepares the model."""
    runner, _ = tiny
    save_weights(state, tmp_path / 'base.safetensors')
    runner.cfg.load_base = str(tmp_path / 'base.safetensors')
    strategy = runner.build_strategy(dict(type='SingleDeviceStrategy'), randomness=dict(seed=0),
                                     log_level='WARNING')
    return strategy.prepare(copy.deepcopy(runner.cfg.model))


def test_flexible_runner_loads_base_before_wrapping(tiny, tmp_path):
    state = tiny[1]
    model = prepared_model(tiny, tmp_path, state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_flexible_runner_base_is_strict(tiny, tmp_path):
    state = tiny[1]
    with pytest.raises(StateDictMismatchError, match='llm.extra.weight'):
        prepared_model(tiny, tmp_path, dict(state, **{'llm.extra.weight': torch.zeros(1)}))
    key = next(k for k in state if k.startswith('projector.') and k.endswith('weight'))
    with pytest.raises(StateDictMismatchError, match='shape'):
        prepared_model(tiny, tmp_path, dict(state, **{key: torch.zeros(3, 3)}))
