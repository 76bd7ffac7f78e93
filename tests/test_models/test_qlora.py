"""QLoRA: which modules become 4-bit and which train (meta device, no bitsandbytes needed), the
config contract and its errors, a real QLoRA step on CPU (bitsandbytes' CPU backend, skipped
without it), a run that loads float weights and quantizes them, and merging into the float base.

Every test that needs bitsandbytes is marked slow: importing it alone takes ~4 s here.
"""
import importlib.util

import pytest
import torch
from fixtures_llava import load_script
from mmengine.config import Config
from torch import nn

from mmllava.engine import load_partial_weights, load_weights, save_weights
from mmllava.models import merge_lora
from mmllava.models.qlora import (
    QLoRASpec,
    apply_pending_quantization,
    check_qlora_runner_cfg,
    parse_quantization_config,
    pending_quantization,
    quantization_targets,
)
from mmllava.registry import MODELS
from mmllava.utils import register_all_modules
from mmllava.utils.compat import bitsandbytes as bnb_compat

QLORA_CFG = 'configs/llava/llava-tiny_qlora.py'
LORA_CFG = 'configs/llava/llava-tiny_lora.py'
BASE_CFG = 'configs/llava/llava-tiny_vqa.py'
CONTRACT = dict(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype='bfloat16')
HAS_BNB = importlib.util.find_spec('bitsandbytes') is not None
needs_bnb = pytest.mark.skipif(
    not HAS_BNB, reason='bitsandbytes is not installed (optional extra: pip install -e '
    '".[qlora]"); its CPU backend runs the real 4-bit step, CUDA is not needed')
LLM_LINEARS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


def build(cfg_path=QLORA_CFG, seed=0, meta=False):
    register_all_modules()
    cfg = Config.fromfile(cfg_path)
    torch.manual_seed(seed)
    if meta:
        with torch.device('meta'):
            return MODELS.build({**cfg.model, 'tokenizer': None})
    return MODELS.build(cfg.model)


def check_plan(model, num_layers):
    """The LLM's linears (base layers under LoRA) are the targets; LoRA + projector train."""
    targets = quantization_targets(model)
    assert len(targets) == num_layers * len(LLM_LINEARS)
    assert all(t.startswith('llm.') and t.endswith('.base_layer') for t in targets)
    assert {t.split('.')[-2] for t in targets} == set(LLM_LINEARS)
    assert not [t for t in targets if 'lm_head' in t or 'lora_' in t]
    # Every other nn.Linear of the model stays float: lm_head, adapters, tower, projector.
    linears = {n for n, m in model.named_modules() if type(m) is nn.Linear}
    rest = linears - set(targets)
    assert 'llm.base_model.model.lm_head' in rest
    assert all(n.startswith(('vision_tower.', 'projector.')) or 'lora_' in n
               or n.endswith('lm_head') for n in rest)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('projector.') or 'lora_' in n for n in trainable)
    assert any(n.startswith('projector.') for n in trainable)
    return targets


def test_contract_parses_and_bad_configs_say_why():
    spec = parse_quantization_config(CONTRACT)
    assert spec == QLoRASpec('nf4', True, torch.bfloat16, torch.uint8, ('lm_head', ))
    # xtuner's dict (type=BitsAndBytesConfig, 8-bit keys unused in 4 bits) reads the same.
    xtuner = dict(type='BitsAndBytesConfig', load_in_8bit=False, llm_int8_threshold=6.0,
                  llm_int8_has_fp16_weight=False, **CONTRACT)
    assert parse_quantization_config(xtuner) == spec
    for bad, match in ((dict(CONTRACT, load_in_4bit=False), 'load_in_4bit=True'),
                       (dict(CONTRACT, load_in_8bit=True), 'load_in_8bit'),
                       (dict(CONTRACT, bnb_4bit_quant_type='int4'), "'nf4' or 'fp4'"),
                       (dict(CONTRACT, bnb_4bit_compute_dtype='bf16'), 'not a torch dtype'),
                       (dict(CONTRACT, load_in_4bits=True), 'unknown keys')):
        with pytest.raises(ValueError, match=match):
            parse_quantization_config(bad)


def test_tiny_plan_on_meta():
    model = build(meta=True)
    assert pending_quantization(model).quant_type == 'nf4'
    check_plan(model, num_layers=4)
    # The LLM is built in bf16 (its float copy until quantized), the rest fp32.
    assert model.llm.get_base_model().model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.projector[0].weight.dtype == torch.float32


def test_7b_plan_on_meta():
    """configs/llava/llava-7b-v1.5_qlora.py: 224 linears 4-bit, xtuner's r 512 adapters."""
    model = build('configs/llava/llava-7b-v1.5_qlora.py', meta=True)
    check_plan(model, num_layers=32)
    lora = sum(p.numel() for n, p in model.named_parameters() if 'lora_' in n)
    # r 512 on q, k, v, o (4096 -> 4096) and gate, up, down (4096 <-> 11008), 32 layers.
    assert lora == 32 * 512 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    quantized = sum(model.get_submodule(t).weight.numel() for t in quantization_targets(model))
    assert quantized == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)  # 6.48 B of the 6.74 B


def test_runner_cfg_checks(monkeypatch):
    cfg = Config.fromfile(QLORA_CFG)
    with pytest.raises(ValueError, match='without a strategy'):
        check_qlora_runner_cfg(Config(dict(cfg.to_dict(), strategy=dict(type='FSDPStrategy'))))
    monkeypatch.setattr(bnb_compat, '_bnb_or_none', lambda: None)
    monkeypatch.setattr(bnb_compat.importlib, 'import_module',
                        lambda name: (_ for _ in ()).throw(ImportError(f'No module {name}')))
    with pytest.raises(ImportError, match=r'pip install -e "\.\[qlora\]"'):
        check_qlora_runner_cfg(cfg)
    check_qlora_runner_cfg(Config.fromfile(LORA_CFG))  # no quantization: nothing to check
    assert not apply_pending_quantization(build(LORA_CFG, meta=True))


def test_shim_passes_only_known_keywords_and_refuses_meta():
    def old_api(data, requires_grad=False, quant_type='fp4'):
        return None
    assert bnb_compat._supported(old_api, dict(quant_type='nf4', module=1)) == dict(
        quant_type='nf4')
    assert bnb_compat._supported(lambda **kw: None, dict(module=1)) == dict(module=1)
    if HAS_BNB:
        with pytest.raises(RuntimeError, match='meta device'):
            bnb_compat.make_linear4bit(nn.Linear(4, 4, device='meta'), 'nf4', True,
                                       torch.bfloat16)


@needs_bnb
@pytest.mark.slow
def test_linear4bit_on_cpu_computes_with_its_nf4_weights():
    """The shim's layer holds NF4 of the float weights and computes with them, also for rows
    that are not a whole number of 64-value blocks (bitsandbytes 0.50.2's CPU kernel got
    those wrong: fix_cpu_dequantize_4bit)."""
    import bitsandbytes as bnb
    torch.manual_seed(0)
    linear = nn.Linear(96, 8)  # 96 = 1.5 blocks a row
    layer = bnb_compat.make_linear4bit(linear, 'nf4', True, torch.float32)
    assert isinstance(layer, bnb.nn.Linear4bit) and bnb_compat.is_linear4bit(layer)
    assert_nf4_of(layer.weight, linear.weight.detach())
    x = torch.randn(3, 96, requires_grad=True)
    deq = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    torch.testing.assert_close(layer(x), x @ deq.t() + linear.bias, rtol=1e-5, atol=1e-5)
    layer(x).sum().backward()
    torch.testing.assert_close(x.grad, deq.sum(0).expand(3, -1), rtol=1e-5, atol=1e-5)
    layer.eval()  # evaluation (no grad) takes the same path: no CPU repacking
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ deq.t() + linear.bias, rtol=1e-5, atol=1e-5)


@needs_bnb
@pytest.mark.slow
def test_inference_quantization_keeps_half_precision():
    from mmllava.models.qlora import quantize_llm_4bit
    model = build()
    names = quantize_llm_4bit(model, prepare_for_training=False)
    assert len(names) == 28 and pending_quantization(model) is None
    llm = model.llm.get_base_model()
    assert llm.model.embed_tokens.weight.dtype == llm.lm_head.weight.dtype == torch.bfloat16


def assert_nf4_of(weight, float_w):
    """``weight`` (a quantized Params4bit) is NF4 of ``float_w``: NF4 rounds each value to one
    of 16 levels scaled by its block's absmax, ~9% relative error for such weights (measured:
    0.092 for normal, 0.092 for uniform ones), far from any other tensor's."""
    import bitsandbytes as bnb
    assert weight.dtype == torch.uint8 and weight.quant_state.quant_type == 'nf4'
    deq = bnb.functional.dequantize_4bit(weight.data, weight.quant_state).float()
    assert deq.shape == float_w.shape
    assert (deq - float_w).norm() < 0.12 * float_w.norm()
    assert (deq - float_w.roll(1, 0)).norm() > 0.5 * float_w.norm()


def fake_batch(model, batch=2, length=40):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (batch, length), generator=g)
    ids[:, 2:2 + model.num_image_tokens] = -200
    labels = ids.clone()
    labels[:, :30] = -100
    return ids, labels, torch.randn(batch, 3, 56, 56, generator=g)


@needs_bnb
@pytest.mark.slow
def test_real_qlora_step_on_cpu():
    """Quantize the loaded LLM, then AdamW steps: the loss falls, only LoRA + projector move,
    the 4-bit weights do not, and the NF4 weights are the float ones within NF4's error."""
    import bitsandbytes as bnb
    model = build()
    # Checkpointing recomputes (dequantizes) each layer again: off here, on in the runner test.
    model.llm.get_base_model().gradient_checkpointing_disable()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert apply_pending_quantization(model)
    assert pending_quantization(model) is None and not apply_pending_quantization(model)
    assert quantization_targets(model) == []  # no plain nn.Linear left: all are 4-bit now
    targets = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(targets) == 28 and all(n.endswith('.base_layer') for n in targets)
    assert type(model.llm.get_base_model().lm_head) is nn.Linear
    for name in targets:
        assert_nf4_of(model.get_submodule(name).weight, before[f'{name}.weight'].float())
    # prepare_model_for_kbit_training: what stays float in the LLM is fp32.
    assert {p.dtype for p in model.llm.parameters()} == {torch.uint8, torch.float32}
    ids, labels, pixels = fake_batch(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    packed = {n: model.get_submodule(n).weight.data.clone() for n in targets}
    model.train()
    losses = []
    for _ in range(3):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = model.loss(ids, labels, pixel_values=pixels)['loss']
        loss.backward()
        lora_b = [p.grad for n, p in model.named_parameters() if 'lora_B' in n]
        assert all(g is not None and g.abs().sum() > 0 for g in lora_b)
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert all(torch.equal(model.get_submodule(n).weight.data, packed[n]) for n in targets)
    assert not torch.equal(model.projector[0].weight, before['projector.0.weight'])
    with pytest.raises(ValueError, match='4-bit'):
        merge_lora(model)


def trained_checkpoint(tmp_path, seed=3):
    """A float base file and a 'trained' trainable-only checkpoint of the tiny QLoRA model."""
    from mmllava.engine import trainable_state_dict_keys
    base = build(BASE_CFG, seed=1)
    save_weights(base.state_dict(), tmp_path / 'base.safetensors')
    model = build(LORA_CFG, seed=seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    keep = trainable_state_dict_keys(model)
    save_weights({k: v for k, v in model.state_dict().items() if k in keep},
                 tmp_path / 'iter_1.safetensors')
    return tmp_path / 'base.safetensors', tmp_path / 'iter_1.safetensors'


def test_merge_lora_tool_merges_a_qlora_run_into_the_float_base(tmp_path, capsys):
    """The QLoRA config's adapters merge into the fp32 base, exactly as the LoRA config's do
    (same keys, same values, fp32): the 4-bit weights play no part. Needs no bitsandbytes."""
    base, ckpt = trained_checkpoint(tmp_path)
    merge = load_script('tools/model_converters/merge_lora.py')
    merge.main([QLORA_CFG, str(ckpt), str(tmp_path / 'q.safetensors'), '--base', str(base)])
    assert 'not into their 4-bit' in capsys.readouterr().err
    merge.main([LORA_CFG, str(ckpt), str(tmp_path / 'l.safetensors'), '--base', str(base)])
    got, want = load_weights(tmp_path / 'q.safetensors'), load_weights(tmp_path / 'l.safetensors')
    assert set(got) == set(want) and not [k for k in got if 'lora_' in k or 'absmax' in k]
    for key, value in want.items():
        assert got[key].dtype == torch.float32 and torch.equal(got[key], value), key
    # The merge moved the LLM's linears off the base (the adapters counted).
    base_sd = load_weights(base)
    key = 'llm.model.layers.0.self_attn.q_proj.weight'
    assert not torch.allclose(got[key], base_sd[key])
    merged = build(BASE_CFG)
    load_partial_weights(merged, got)  # the base layout: the base config loads it


@needs_bnb
@pytest.mark.slow
def test_runner_loads_float_base_then_quantizes_and_trains(tmp_path):
    """LlavaRunner with the tiny QLoRA config: load_base (fp32 file) loads into the float LLM,
    then its linears become NF4 of those weights; 2 iterations train LoRA + projector only and
    the checkpoint holds just those (which merge_lora.py merges into the float base)."""
    import bitsandbytes as bnb
    from fixtures_train import dataloader_cfg, write_colour_data

    from mmllava.engine import LlavaRunner
    register_all_modules(init_default_scope=False)
    base, _ = trained_checkpoint(tmp_path)
    cfg = Config.fromfile(QLORA_CFG)
    ann = write_colour_data(tmp_path / 'data', 8)
    cfg.train_dataloader = dataloader_cfg(ann, batch_size=2)
    cfg.train_cfg.max_iters = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    cfg.work_dir = str(tmp_path / 'work')
    cfg.load_base = str(base)
    runner = LlavaRunner.from_cfg(cfg)
    runner.train()
    model = runner.model
    base_sd = load_weights(base)
    quantized = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 28
    for name in quantized:
        key = name.replace('llm.base_model.model.', 'llm.').replace('.base_layer', '.weight')
        # The file's fp32 weights, loaded into the bf16 LLM, then quantized.
        assert_nf4_of(model.get_submodule(name).weight, base_sd[key].to(torch.bfloat16).float())
    emb = model.llm.get_base_model().model.embed_tokens.weight
    assert emb.dtype == torch.float32 and torch.equal(
        emb, base_sd['llm.model.embed_tokens.weight'].to(torch.bfloat16).float())
    model.eval()
    with torch.no_grad():  # evaluation after training runs on the 4-bit model too
        logits = model(dict(input_ids=torch.randint(3, 1000, (2, 12))), mode='tensor')
    assert logits.shape == (2, 12, 1024) and torch.isfinite(logits).all()
    saved = load_weights(tmp_path / 'work' / 'iter_2.safetensors')
    assert saved and all(k.startswith('projector.') or 'lora_' in k for k in saved)
    merge = load_script('tools/model_converters/merge_lora.py')
    merge.main([QLORA_CFG, str(tmp_path / 'work' / 'iter_2.safetensors'),
                str(tmp_path / 'merged.safetensors'), '--base', str(base)])
    merged = build(BASE_CFG)
    load_partial_weights(merged, load_weights(tmp_path / 'merged.safetensors'))
