"""Dynamic int8 of the LLM's linear layers (``load_8bit``): what changes, what it costs, and that
answers stay those of the float model."""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_llava import TINY_CONFIG, tiny_model
from torch import nn

from mmllava.apis import LlavaInferencer, get_model
from mmllava.apis.inference import build_inference_pipeline
from mmllava.datasets.collate import llava_collate
from mmllava.engine.checkpoint import save_weights
from mmllava.models import Int8DynamicLinear, quantize_llm_int8
from mmllava.models.quantize import module_bytes

ROOT = Path(__file__).resolve().parents[2]
CONFIG = TINY_CONFIG
QUESTIONS = ['What is it?', 'Describe the image.', 'What color is the sky?', 'How many people?']


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """The tiny LLaVA (seeded random weights, saved to a file) in fp32 and int8."""
    fp32 = tiny_model()
    weights = tmp_path_factory.mktemp('quant') / 'tiny.safetensors'
    save_weights(fp32.state_dict(), weights)
    int8 = quantize_llm_int8(copy.deepcopy(fp32))
    return dict(fp32=fp32, int8=int8, weights=weights)


def _images(n):
    return [np.random.RandomState(i).randint(0, 255, (48 + i, 64, 3), dtype=np.uint8)
            for i in range(n)]


def test_only_llm_linears_are_quantized(models):
    fp32, int8 = models['fp32'], models['int8']
    quantized = [name for name, m in int8.named_modules() if isinstance(m, Int8DynamicLinear)]
    layers = fp32.llm.config.num_hidden_layers
    # q, k, v, o, gate, up, down per decoder layer; nothing else.
    assert len(quantized) == 7 * layers
    assert all(name.startswith('llm.') for name in quantized)
    # The vision tower and projector keep every float linear; lm_head stays float.
    for part in ('vision_tower', 'projector'):
        before = [n for n, m in getattr(fp32, part).named_modules() if type(m) is nn.Linear]
        after = [n for n, m in getattr(int8, part).named_modules() if type(m) is nn.Linear]
        assert before and before == after
    assert type(int8.llm.lm_head) is nn.Linear
    left = [n for n, m in int8.llm.named_modules() if type(m) is nn.Linear]
    assert left == ['lm_head']
    # The original model is untouched (quantize a copy to keep both).
    assert not any(isinstance(m, Int8DynamicLinear) for m in fp32.modules())


def test_int8_is_smaller(models):
    fp32, int8 = models['fp32'], models['int8']
    float_linear = sum(m.weight.numel() * 4 for m in fp32.llm.modules()
                       if type(m) is nn.Linear and m is not fp32.llm.lm_head)

    def state_bytes(model):
        return sum(t.numel() * t.element_size() for t in model.state_dict().values())

    # int8 weights are a quarter of fp32 ones; the per-channel scales cost a little.
    saved = state_bytes(fp32.llm) - state_bytes(int8.llm)
    assert 0.74 * float_linear <= saved < 0.75 * float_linear
    # In memory too (module_bytes also counts the non-persistent rotary buffers).
    assert module_bytes(fp32.llm) - module_bytes(int8.llm) == saved
    assert module_bytes(int8) < module_bytes(fp32)


def test_int8_linear_matches_float():
    torch.manual_seed(0)
    linear = nn.Linear(96, 40)
    q = Int8DynamicLinear.from_float(linear)
    x = torch.randn(3, 5, 96)
    with torch.no_grad():
        ref, out = linear(x), q(x)
    assert out.shape == ref.shape and out.dtype == torch.float32
    err = (out - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.02  # measured ~0.008: per-token x per-channel rounding
    with torch.no_grad():
        half = q(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), out, atol=0.05, rtol=0.02)


def test_logits_close_to_fp32(models):
    fp32, int8 = models['fp32'], models['int8']
    pipeline = build_inference_pipeline(fp32)
    inferencer = LlavaInferencer(fp32)
    samples = [pipeline(inferencer._sample(i, img, QUESTIONS[i]))
               for i, img in enumerate(_images(4))]
    data = fp32.data_preprocessor(llava_collate(samples), False)
    with torch.no_grad():
        ref = fp32(data['inputs'], mode='tensor')
        out = int8(data['inputs'], mode='tensor')
    mask = data['inputs']['attention_mask'].bool()
    diff = (ref - out)[mask].abs()
    # Measured over three seeds: max 0.019, mean 0.003, with logits of std 0.22.
    assert 0 < diff.max() < 0.05
    assert diff.mean() < 0.01
    top1 = (ref.argmax(-1) == out.argmax(-1))[mask].float().mean()
    assert top1 > 0.85  # measured 0.91-0.99; random weights give near ties


def test_greedy_answers_agree(models):
    images = _images(12)
    questions = QUESTIONS * 3
    ref = LlavaInferencer(models['fp32'], batch_size=6)(images, questions, max_new_tokens=8)
    out = LlavaInferencer(models['int8'], batch_size=6)(images, questions, max_new_tokens=8)
    agree = sum(a['pred_answer'] == b['pred_answer'] for a, b in zip(ref, out))
    assert agree >= 9, f'{agree}/12 answers agree'  # measured 11-12/12 over three seeds


def test_get_model_load_8bit(models):
    model = get_model(CONFIG, pretrained=models['weights'], load_8bit=True)
    assert sum(isinstance(m, Int8DynamicLinear) for m in model.modules()) == 28
    for (name, a), b in zip(model.state_dict().items(), models['int8'].state_dict().values()):
        assert torch.equal(a, b), name
    inferencer = LlavaInferencer(CONFIG, pretrained=models['weights'], load_8bit=True)
    assert isinstance(inferencer.model.llm.model.layers[0].mlp.up_proj, Int8DynamicLinear)


def test_load_8bit_refuses_gpu_and_lora():
    with pytest.raises(ValueError, match='bitsandbytes'):
        get_model(CONFIG, device='cuda', load_8bit=True)
    from mmllava.models import apply_lora
    model = get_model(CONFIG)
    model.llm = apply_lora(model.llm, r=4)
    with pytest.raises(ValueError, match='merge'):
        quantize_llm_int8(model)


@pytest.mark.slow
def test_image_demo_load_8bit(models, tmp_path):
    image = _images(1)[0]
    from PIL import Image
    path = tmp_path / 'image.png'
    Image.fromarray(image).save(path)
    out = subprocess.run(
        [sys.executable, str(ROOT / 'demo/image_demo.py'), str(path), CONFIG, '--checkpoint',
         str(models['weights']), '--load-8bit', '--question', 'What is it?'],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    expected = LlavaInferencer(models['int8'])(str(path), 'What is it?')[0]['pred_answer']
    assert f'answer: {expected}\n' in out.stdout
