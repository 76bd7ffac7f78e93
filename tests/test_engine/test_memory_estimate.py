"""The memory estimator: its counts against built models, its strategy arithmetic, its CLI."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmllava.engine.memory_estimate import Workload, count_model, training_estimate
from mmllava.engine.memory_formulas import (
    NF4_BYTES,
    Precision,
    backward_sweep,
    decoder_layer_bytes,
    model_states,
    verdict,
)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, 'configs', 'llava', 'llava-tiny_lora.py')


def _tiny(device='cpu', **model):
    from mmengine.config import Config

    import mmllava.models  # noqa: F401
    from mmllava.registry import MODELS
    cfg = Config.fromfile(TINY).model.to_dict()
    cfg.update(tokenizer=None, **model)
    with torch.device(device):
        return MODELS.build(cfg)


@pytest.fixture(scope='module')
def lora_pair():
    """The tiny LoRA model on the CPU (real) and on the meta device."""
    return _tiny('cpu'), _tiny('meta')


def test_counts_equal_the_built_model(lora_pair):
    real, meta = lora_pair
    c = count_model(meta, lora=dict(r=16, dropout=0.05))
    assert c.trainable + c.frozen == sum(p.numel() for p in real.parameters())
    assert c.trainable == sum(p.numel() for p in real.parameters() if p.requires_grad)
    # LoRA's trainable count is peft's (adapters) plus the projector's
    adapters, _ = real.llm.get_nb_trainable_parameters()
    assert c.params['lora']['trainable'] == adapters
    assert c.params['projector']['trainable'] == sum(p.numel() for p in real.projector.parameters())
    assert c.weight_bytes == 4 * (c.trainable + c.frozen)
    assert not c.llm_trained and c.projector_trained and not c.vision_trained


def test_weight_bytes_by_dtype_and_qlora():
    model = _tiny('meta', lora=None)
    model.llm.to(torch.bfloat16)
    c = count_model(model)
    llm = sum(p.numel() for p in model.llm.parameters())
    rest = sum(p.numel() for n, p in model.named_parameters() if not n.startswith('llm.'))
    assert c.weight_bytes == 2 * llm + 4 * rest
    quant = dict(load_in_4bit=True, bnb_4bit_use_double_quant=True)
    qmodel = _tiny('meta', lora=dict(r=4, alpha=8, dropout=0.0))  # QLoRA: adapters on top
    q = count_model(qmodel, lora=dict(r=4), quantization=quant)
    linears = sum(m.weight.numel() for n, m in qmodel.llm.named_modules()
                  if isinstance(m, torch.nn.Linear) and 'lora_' not in n
                  and not n.endswith('lm_head'))
    assert linears == sum(m.weight.numel() for n, m in model.llm.named_modules()
                          if isinstance(m, torch.nn.Linear) and not n.endswith('lm_head'))
    adapters = q.params['lora']['total']
    assert q.quantized == linears and adapters == q.params['lora']['trainable'] > 0
    assert q.weight_bytes == pytest.approx(linears * NF4_BYTES[True] + 4 * (llm - linears)
                                           + 4 * adapters + 4 * rest)
    assert NF4_BYTES[True] == pytest.approx(0.5159, abs=1e-4)  # 4 bits + double-quant absmax


def test_strategies_shard_what_they_should():
    kw = dict(weights=2e9, trainable=int(1e9), frozen=0, param_bytes=4, largest_unit=int(1e7),
              root_params=int(1e8), cuda=False)
    ddp = model_states('ddp', 8, **kw)
    assert ddp['gradients'] == ddp['buffers'] == 4e9 and ddp['optimizer'] == 8e9
    z3 = model_states('zero3', 8, **kw)
    assert z3['weights'] == 2 * 1e9 / 8 and z3['optimizer'] == 12e9 / 8
    assert z3['gradients'] == (2 + 4) * 1e9 / 8
    z2 = model_states('zero2', 8, **kw)
    assert z2['weights'] == 2e9 and z2['optimizer'] == z3['optimizer']
    off = model_states('zero3', 8, offload_optimizer=True, offload_param=True, **kw)
    assert off['weights'] == off['optimizer'] == 0 and off['host'] == 16e9 + 2e9
    full = model_states('fsdp_full', 8, **kw)
    op = model_states('fsdp_grad_op', 8, **kw)
    assert full['optimizer'] == 8e9 / 8 and op['buffers'] > full['buffers']
    with pytest.raises(ValueError, match='strategy'):
        model_states('zero9', 8, **kw)


def test_layer_formula_and_levers():
    h, i = 4096, 11008
    fp32 = decoder_layer_bytes(h, i, 32, 32, Precision(4, False))
    # norms 16h, linear inputs 12h + 4i, rotary q/k + v 4h + 8kv, sdpa out 4h, MLP 12i, lse
    assert fp32 == 36 * h + 8 * h + 16 * i + 4 * 32
    bf16 = decoder_layer_bytes(h, i, 32, 32, Precision(2, False))
    assert bf16 < fp32 / 1.8
    frozen = decoder_layer_bytes(h, i, 32, 32, Precision(4, False), base_trained=False)
    lora = decoder_layer_bytes(h, i, 32, 32, Precision(4, False), base_trained=False,
                               lora=dict(r=8, dropout=0.05))
    assert frozen < lora
    # padded batches repeat grouped k/v heads for sdpa
    assert decoder_layer_bytes(h, i, 32, 4, Precision(2, False), padded=True) > \
        decoder_layer_bytes(h, i, 32, 4, Precision(2, False), padded=False)
    assert backward_sweep([(10, 1), (10, 1)]) == 21  # all activations + the first grads
    assert backward_sweep([(1, 10), (1, 10)]) == 21  # the first stage: its act + all grads


def test_checkpointing_and_labelled_logits_lower_the_estimate(lora_pair):
    c = count_model(lora_pair[1], lora=dict(r=16, dropout=0.05))
    w = Workload(batch=4, seq_len=256, labelled=64, images=1, visual_tokens=25)
    base = training_estimate(c, w, cuda=False)
    assert training_estimate(c, w, checkpointing=True, cuda=False)['peak'] < base['peak']
    assert training_estimate(c, w, full_logits=True, cuda=False)['peak'] > base['peak']
    assert verdict(base['peak'], 2.0)['fits'] and not verdict(80 * 2**30, 80)['fits']


def test_cli_on_a_tiny_config(capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))
    import estimate_memory
    estimate_memory.main([TINY, '--gpus', '1', '--gpu-mem', '24',
                          '--cfg-options', 'train_dataloader.batch_size=2'])
    out = capsys.readouterr().out
    assert 'training, single on 1 GPU(s)' in out and 'batch 2' in out and 'fits a 24 GB' in out
    with pytest.raises(FileNotFoundError):
        estimate_memory.main(['no/such.py'])


def test_readme_section_is_replaced():
    from mmllava.engine.memory_config import replace_section
    text = '# T\n\n## Memory\n\nold\n\n## Next\n\nkeep\n'
    new = replace_section(text, 'Memory', 'new')
    assert 'old' not in new and 'new' in new and new.endswith('## Next\n\nkeep\n')
    assert replace_section('# T\n', 'Memory', 'x').endswith('## Memory\n\nx\n\n')


@pytest.mark.slow
def test_tiny_training_peak_is_measured_within_15_percent():
    script = osp.join(ROOT, 'tools', 'analysis_tools', 'validate_memory.py')
    proc = subprocess.run([sys.executable, script, '--rows', 'tiny-train', 'tiny-generate'],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    for row in rows:
        assert 0.85 <= row['ratio'] <= 1.15, row
