"""FSDP and DeepSpeed through tools/train.py: two CPU processes (gloo) train as one process,
starting from load_base.

torch 2.14's FSDP runs on CPUs when told ``device_id='cpu'`` (mmllava's compat shim; mmengine
gives a CUDA index); DeepSpeed's ZeRO runs on CPUs too (its CPU accelerator over gloo; it
builds a shared-memory op once, minutes, then caches it). The single process runs without a
strategy (LlavaRunner); all start from the same ``load_base`` file, so their losses agree only
if the sharded run loaded it before sharding.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fixtures_train import dataloader_cfg, write_colour_data
from mmengine.config import Config

from mmllava.engine import load_weights, save_weights
from mmllava.registry import MODELS
from mmllava.utils import register_all_modules

ROOT = Path(__file__).parents[2]
TRAIN = ROOT / 'tools' / 'train.py'
TESTS = ROOT / 'tests'
ENV = dict(os.environ, PYTHONPATH=f'{TESTS}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
           OMP_NUM_THREADS='1')
BASE = ROOT / 'configs' / 'llava' / 'llava-tiny_finetune.py'
STEPS = 5
HAS_DEEPSPEED = importlib.util.find_spec('deepspeed') is not None
NO_DEEPSPEED = 'deepspeed is not installed (an optional extra for GPU machines)'
# The 7B recipes' settings, in fp32 for an exact match: FSDP with one unit per decoder /
# encoder layer; ZeRO-2 and ZeRO-3 without bf16.
FSDP = dict(type='FSDPStrategy', model_wrapper=dict(
    sharding_strategy='FULL_SHARD', use_orig_params=True,
    auto_wrap_policy=dict(type='mmllava.engine.strategies.layer_name_wrap_policy',
                          layer_names=['LlamaDecoderLayer', 'CLIPEncoderLayer'])),
    state_dict_cfg='full')
STRATEGIES = {
    'fsdp': dict(strategy=FSDP),
    'zero2': dict(strategy=dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2)),
                  optim_wrapper=dict(type='DeepSpeedOptimWrapper')),
    'zero3': dict(strategy=dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=3)),
                  optim_wrapper=dict(type='DeepSpeedOptimWrapper')),
}


def write_config(path: Path, ann: str, batch_size: int, load_base: str, **extra) -> str:
    loader = dataloader_cfg(ann, 'vicuna_v1', batch_size=batch_size, shuffle=False)
    lines = [
        f'_base_ = [{str(BASE)!r}]',
        "custom_imports = dict(imports=['fixtures_train'], allow_failed_imports=False)",
        f'train_dataloader = dict(_delete_=True, **{loader!r})',
        f'train_cfg = dict(max_iters={STEPS})',
        'param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]',
        f'load_base = {load_base!r}',
        "custom_hooks = [dict(type='TrainableOnlyCheckpointHook'), dict(type='RecordRankHook')]",
    ] + [f'{k} = {v!r}' for k, v in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def write_base(path: Path) -> str:
    """Full tiny weights no initialization gives (a seed of its own, scaled)."""
    register_all_modules()
    cfg = Config.fromfile(str(BASE))
    torch.manual_seed(1234)
    model = MODELS.build(cfg.model)
    save_weights({k: v * 1.5 if v.is_floating_point() else v
                  for k, v in model.state_dict().items()}, path)
    return str(path)


def train(*args):
    return subprocess.Popen([sys.executable, *map(str, args)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait(proc):
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-4000:]


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    """Data, the load_base file, and the single-process run's record (run in the background
    while the first sharded run starts)."""
    root = tmp_path_factory.mktemp('sharded')
    ann = write_colour_data(root / 'data', 16, 'vicuna_v1')
    base = write_base(root / 'base.safetensors')
    proc = train(TRAIN, write_config(root / 'single.py', ann, 4, base), '--work-dir',
                 root / 'single')
    record = {}

    def result():
        if not record:
            wait(proc)
            record.update(torch.load(root / 'single' / 'rank0.pt'))
        return record

    return root, ann, base, result


@pytest.mark.slow
@pytest.mark.parametrize('name', [
    'fsdp',
    pytest.param('zero2', marks=pytest.mark.skipif(not HAS_DEEPSPEED, reason=NO_DEEPSPEED)),
    pytest.param('zero3', marks=pytest.mark.skipif(not HAS_DEEPSPEED, reason=NO_DEEPSPEED)),
])
def test_two_cpu_processes_match_one_from_load_base(single, name):
    """2 ranks x batch 2, sharded, == 1 process x batch 4, for 5 steps."""
    root, ann, base, result = single
    work = root / name
    cfg = write_config(root / f'{name}.py', ann, 2, base, **STRATEGIES[name])
    wait(train('-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_port',
               str(29500 + os.getpid() % 1000), TRAIN, cfg, '--work-dir', work,
               '--launcher', 'pytorch'))
    one = result()
    r0, r1 = (torch.load(work / f'rank{r}.pt') for r in (0, 1))
    assert len(one['losses']) == len(r0['losses']) == len(r1['losses']) == STEPS
    # Every sample has the same number of labelled tokens: the mean of the ranks' losses is the
    # global batch's loss (each rank's loss is the mean over its own labelled tokens).
    diffs = [abs((a + b) / 2 - full) for a, b, full in zip(r0['losses'], r1['losses'],
                                                            one['losses'])]
    print(f'{name}: |mean rank loss - single loss| per step:', diffs)
    assert max(diffs) < 1e-4, (r0['losses'], r1['losses'], one['losses'])
    assert r0['losses'][0] != r1['losses'][0]  # the ranks did see different samples
    assert one['losses'][-1] < one['losses'][0]  # and it trained
    if name != 'fsdp':
        return  # DeepSpeed writes its own checkpoint folders (no trainable-only twin)
    # The last checkpoint (FSDP's full state dict, gathered on rank 0) holds the trained
    # projector + LLM as the single run's does.
    full, sharded = (load_weights(root / run / f'iter_{STEPS}.safetensors')
                     for run in ('single', name))
    assert set(full) == set(sharded) and any(k.startswith('llm.') for k in full)
    for key in full:
        torch.testing.assert_close(sharded[key], full[key], rtol=1e-4, atol=1e-4)
