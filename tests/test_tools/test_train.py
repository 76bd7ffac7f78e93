"""tools/train.py end to end on the tiny LLaVA: it learns, masked tokens carry no loss, a run
killed with SIGKILL resumes to the same losses, and DDP on two CPU processes matches one."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_train import dataloader_cfg, write_colour_data
from mmengine.config import Config

from mmllava.conversation import IGNORE_INDEX, build_tokenizer
from mmllava.registry import DATASETS, MODELS
from mmllava.utils import register_all_modules

ROOT = Path(__file__).parents[2]
TRAIN = ROOT / 'tools' / 'train.py'
TESTS = ROOT / 'tests'
ENV = dict(os.environ, PYTHONPATH=f'{TESTS}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
           OMP_NUM_THREADS='1')


def write_config(path: Path, base: str, ann: str, template: str, max_iters: int,
                 batch_size: int = 4, ckpt_interval: int = 1000, shuffle: bool = True,
                 **extra) -> str:
    """A config file that inherits a tiny stage config and trains on ``ann``."""
    loader = dataloader_cfg(ann, template, batch_size=batch_size, shuffle=shuffle)
    lines = [
        f'_base_ = [{str(ROOT / "configs" / "llava" / base)!r}]',
        "custom_imports = dict(imports=['fixtures_train'], allow_failed_imports=False)",
        f'train_dataloader = dict(_delete_=True, **{loader!r})',
        f'train_cfg = dict(max_iters={max_iters})',
        'param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=False)]',
        f'default_hooks = dict(checkpoint=dict(interval={ckpt_interval}, max_keep_ckpts=-1))',
        "custom_hooks = [dict(type='TrainableOnlyCheckpointHook'), dict(type='RecordRankHook')]",
    ] + [f'{k} = {v!r}' for k, v in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def json_losses(work_dir: Path) -> dict:
    """{iter: loss} over every json log of a work_dir (later runs override earlier ones)."""
    out = {}
    for log in sorted(work_dir.glob('*/vis_data/*.json')):
        if log.name == 'scalars.json':
            continue
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if 'loss' in row:
                out[row['iter']] = row['loss']
    return out


def run_train(*args, timeout=240):
    proc = subprocess.run([sys.executable, str(TRAIN), *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    return dict(vicuna=write_colour_data(root, 32, 'vicuna_v1'),
                plain=write_colour_data(root, 32, 'plain'))


@pytest.mark.slow
def test_tiny_finetune_learns(data, tmp_path):
    """Loss over the last iterations is well under half the first ones."""
    cfg = write_config(tmp_path / 'cfg.py', 'llava-tiny_finetune.py', data['vicuna'],
                       'vicuna_v1', max_iters=24, batch_size=8)
    start = time.time()
    run_train(cfg, '--work-dir', tmp_path / 'work')
    losses = json_losses(tmp_path / 'work')
    assert sorted(losses) == list(range(1, 25))
    first = sum(losses[i] for i in range(1, 4)) / 3
    last = sum(losses[i] for i in range(22, 25)) / 3
    print(f'tiny finetune: loss {first:.3f} -> {last:.3f} in {time.time() - start:.1f}s')
    assert last <= 0.5 * first, losses


def test_loss_ignores_masked_and_padded_positions(data):
    register_all_modules()
    cfg = Config.fromfile(ROOT / 'configs' / 'llava' / 'llava-tiny_finetune.py')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    dataset = DATASETS.build(dataloader_cfg(data['vicuna'], 'vicuna_v1')['dataset'])
    tok = build_tokenizer(cfg.model.tokenizer)
    samples = [dataset[0], dataset[3]]
    # Hand-computed mask: the labels are exactly the answer's tokens and </s>, at the end.
    for sample in samples:
        ids, labels = sample['inputs']['input_ids'], sample['inputs']['labels']
        answer = sample['data_samples'].prompt.rsplit('ASSISTANT:', 1)[1][:-len('</s>')].strip()
        want = tok.encode(answer) + [tok.eos_token_id]
        assert labels[-len(want):].tolist() == want == ids[-len(want):].tolist()
        assert (labels[:-len(want)] == IGNORE_INDEX).all()
    # Make the two samples differ in length so that the batch is padded.
    samples[1]['inputs'] = {k: (torch.cat([v[:-6], v[-6:-5].repeat(3), v[-6:]])
                                if k in ('input_ids', 'labels') else v)
                            for k, v in samples[1]['inputs'].items()}
    batch = model.data_preprocessor(dict(inputs=[s['inputs'] for s in samples],
                                         data_samples=None), True)['inputs']
    assert (batch['attention_mask'] == 0).any()
    with torch.no_grad():
        loss = model(batch, mode='loss')['loss']
        logits = model(batch, mode='tensor')
    shift_logits, shift_labels = logits[:, :-1], batch['labels'][:, 1:]
    keep = shift_labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(shift_logits[keep], shift_labels[keep])
    torch.testing.assert_close(loss, manual, rtol=1e-5, atol=1e-6)
    # Changing what masked positions would predict (their labels' targets) changes nothing:
    # write other token ids into the masked labels and mask them again.
    scrambled = batch['labels'].clone()
    masked = scrambled == IGNORE_INDEX
    scrambled[masked] = torch.randint(3, 1000, (int(masked.sum()), ))
    scrambled[masked] = IGNORE_INDEX
    with torch.no_grad():
        again = model({**batch, 'labels': scrambled}, mode='loss')['loss']
    assert again == loss
    # ...while an unmasked target does change it: the check can fail.
    changed = batch['labels'].clone()
    changed[0, -2] = (changed[0, -2] + 1) % 1000
    with torch.no_grad():
        assert model({**batch, 'labels': changed}, mode='loss')['loss'] != loss


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted_run(data, tmp_path):
    kwargs = dict(base='llava-tiny_pretrain.py', ann=data['plain'], template='plain',
                  max_iters=8, ckpt_interval=4)
    straight = write_config(tmp_path / 'straight.py', **kwargs)
    run_train(straight, '--work-dir', tmp_path / 'straight')
    reference = json_losses(tmp_path / 'straight')

    cfg = write_config(tmp_path / 'killed.py', **kwargs)
    work = tmp_path / 'killed'
    proc = subprocess.Popen([sys.executable, str(TRAIN), cfg, '--work-dir', str(work)],
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = work / 'iter_4.pth'
    deadline = time.time() + 180
    while not (work / 'last_checkpoint').exists() and time.time() < deadline:
        assert proc.poll() is None, 'training ended before its first checkpoint'
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert ckpt.exists() and not (work / 'iter_8.pth').exists()

    run_train(cfg, '--work-dir', work, '--resume')
    resumed = json_losses(work)
    assert sorted(resumed) == list(range(1, 9))
    for it in range(5, 9):
        assert abs(resumed[it] - reference[it]) <= 1e-6, (it, resumed[it], reference[it])
    print('resume: max |loss diff| over iters 5-8:',
          max(abs(resumed[it] - reference[it]) for it in range(5, 9)))
    # The checkpoints of this projector-only stage hold the projector only.
    state = torch.load(work / 'iter_8.pth', weights_only=False)['state_dict']
    assert state and all(k.startswith('projector.') for k in state)


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one(data, tmp_path):
    """2 ranks x batch 2 == 1 process x batch 4 (no shuffle, fp32, no dropout)."""
    kwargs = dict(base='llava-tiny_finetune.py', ann=data['vicuna'], template='vicuna_v1',
                  max_iters=3, shuffle=False)
    single = write_config(tmp_path / 'single.py', batch_size=4, **kwargs)
    run_train(single, '--work-dir', tmp_path / 'single')
    ddp = write_config(tmp_path / 'ddp.py', batch_size=2, **kwargs)
    proc = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
         '--master_port', str(29500 + os.getpid() % 1000), str(TRAIN), ddp, '--work-dir',
         str(tmp_path / 'ddp'), '--launcher', 'pytorch'],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one = torch.load(tmp_path / 'single' / 'rank0.pt')
    r0, r1 = (torch.load(tmp_path / 'ddp' / f'rank{r}.pt') for r in (0, 1))
    assert set(r0['params']) == set(r1['params']) == set(one['params'])
    for name in r0['params']:
        assert torch.equal(r0['params'][name], r1['params'][name]), name
        # gloo's allreduce sums in another order than one process: fp32 rounding, ~1e-5
        torch.testing.assert_close(r0['params'][name], one['params'][name],
                                   rtol=1e-4, atol=1e-4)
    # Every sample has the same number of labelled tokens: the mean of the ranks' losses is
    # the global batch's loss.
    for a, b, full in zip(r0['losses'], r1['losses'], one['losses']):
        assert abs((a + b) / 2 - full) < 1e-5, (a, b, full)
    assert r0['losses'][0] != r1['losses'][0]  # the ranks did see different samples
    print('ddp: max |mean rank loss - single loss|:',
          max(abs((a + b) / 2 - f) for a, b, f in zip(r0['losses'], r1['losses'],
                                                     one['losses'])),
          'max |param diff|:', max(float((r0['params'][n] - one['params'][n]).abs().max())
                                   for n in r0['params']))


@pytest.mark.slow
def test_merge_lora_tool(tmp_path):
    """Adapters trained on top of base weights: merged weights load into the base config and
    give the LoRA model's logits; unmerged ones load into the LoRA config."""
    from mmllava.apis import get_model
    from mmllava.engine import save_weights, trainable_state_dict_keys
    register_all_modules()
    lora_cfg = ROOT / 'configs' / 'llava' / 'llava-tiny_lora.py'
    base_cfg = ROOT / 'configs' / 'llava' / 'llava-tiny_vqa.py'
    torch.manual_seed(1)
    base = MODELS.build(Config.fromfile(base_cfg).model)
    save_weights(base.state_dict(), tmp_path / 'base.safetensors')
    torch.manual_seed(2)
    lora = MODELS.build(Config.fromfile(lora_cfg).model).eval()
    from mmllava.engine import load_partial_weights, load_weights
    load_partial_weights(lora, load_weights(tmp_path / 'base.safetensors'))
    with torch.no_grad():  # "trained" adapters and projector
        for name, p in lora.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    keep = trainable_state_dict_keys(lora)
    save_weights({k: v for k, v in lora.state_dict().items() if k in keep},
                 tmp_path / 'iter_1.safetensors')
    merge = ROOT / 'tools' / 'model_converters' / 'merge_lora.py'
    for out, extra in (('merged.safetensors', []), ('unmerged.safetensors', ['--no-merge'])):
        proc = subprocess.run([sys.executable, str(merge), str(lora_cfg),
                               str(tmp_path / 'iter_1.safetensors'), str(tmp_path / out),
                               '--base', str(tmp_path / 'base.safetensors'), *extra],
                              env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
    ids = torch.randint(3, 1000, (1, 10))
    with torch.no_grad():
        want = lora(dict(input_ids=ids), mode='tensor')
        merged = get_model(base_cfg, pretrained=tmp_path / 'merged.safetensors')
        unmerged = get_model(lora_cfg, pretrained=tmp_path / 'unmerged.safetensors')
        torch.testing.assert_close(merged(dict(input_ids=ids), mode='tensor'), want,
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(unmerged(dict(input_ids=ids), mode='tensor'), want,
                                   rtol=0, atol=0)
        # The adapters matter: the base alone answers differently.
        assert not torch.allclose(base.eval()(dict(input_ids=ids), mode='tensor'), want,
                                  atol=1e-3)
        # The trainable-only checkpoint itself loads on top of the config's load_base ...
        cfg = Config.fromfile(lora_cfg)
        cfg.load_base = str(tmp_path / 'base.safetensors')
        partial = get_model(cfg, pretrained=tmp_path / 'iter_1.safetensors')
        torch.testing.assert_close(partial(dict(input_ids=ids), mode='tensor'), want,
                                   rtol=0, atol=0)
        # ... and never alone: without a base, the frozen weights would stay random.
        from mmllava.engine import StateDictMismatchError
        with pytest.raises(StateDictMismatchError, match='missing'):
            get_model(lora_cfg, pretrained=tmp_path / 'iter_1.safetensors')
        # A complete checkpoint needs no base: a load_base that is not even on this machine
        # (a previous stage's work_dir) is not read.
        cfg = Config.fromfile(lora_cfg)
        cfg.load_base = str(tmp_path / 'elsewhere' / 'stage1.safetensors')
        whole = get_model(cfg, pretrained=tmp_path / 'unmerged.safetensors')
        torch.testing.assert_close(whole(dict(input_ids=ids), mode='tensor'), want,
                                   rtol=0, atol=0)
