"""LLaVA-OneVision-0.5B at its real shape, random weights, on this machine.

Two measurements, both written to ``--out`` (JSON):

1. ``parity``: transformers' ``LlavaOnevisionForConditionalGeneration`` at the shape of
   ``configs/llava_onevision/llava-onevision-qwen2-0.5b-ov_vqa.py`` (SigLIP-so400m-384 + Qwen2-0.5B,
   random weights), its weights mapped to ours; our pipeline prepares a 384x384 image, a wide
   384x1152 image and an 8-frame clip, transformers gets the same ids and pixels. Reports the
   largest logit difference, whether 8 greedy ids agree, and each forward's seconds.
2. ``lora``: ``tools/train.py`` on ``llava-onevision-qwen2-0.5b-ov_lora.py`` for 3 steps
   (random weights, fp32 on the CPU, batch 1, the tiny rendered LLaVA images: 56 px, one tile
   and the base view each, about 1,540 tokens a sample; the recipe's gradient checkpointing
   unless ``--no-grad-ckpt``), in a subprocess; seconds per step from its log and the
   subprocess's peak resident memory (``ru_maxrss`` of the children: run one measurement per
   process).

A benchmark, not a test (about 10 minutes on 2 cores)::

    python tools/analysis_tools/onevision_real_shape.py --out work_dirs/onevision_real_shape.json

The tokenizer is a byte-level BPE trained here (the real Qwen2 tokenizer is not on this
machine); ids are ids, the model's 152000 rows hold them.
"""
import json
import os
import os.path as osp
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
VQA = osp.join(ROOT, 'configs', 'llava_onevision', 'llava-onevision-qwen2-0.5b-ov_vqa.py')
LORA = osp.join(ROOT, 'configs', 'llava_onevision', 'llava-onevision-qwen2-0.5b-ov_lora.py')
IMAGE_ID, VIDEO_ID = 151646, 151647


def _tokenizer(folder: str) -> str:
    """A byte-level BPE with Qwen's special tokens, saved as ``folder/tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, show_progress=False,
        special_tokens=['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = ('You are a helpful assistant. user assistant system What is the person doing? '
            'A person is walking running jumping dancing. Describe the picture and the clip. ')
    tok.train_from_iterator([text] * 50, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token='<|im_end|>',
                            pad_token='<|endoftext|>').save_pretrained(folder)
    return osp.join(folder, 'tokenizer.json')


def _hf_inputs(inputs, kinds):
    """Our batch of one as transformers' OneVision takes it."""
    import torch
    ids = inputs['input_ids'].clone()
    frames = [int(f) for f in inputs['visual_frames']]
    pixels = inputs['pixel_values'].split(frames)
    kind = kinds[0]
    ids[ids == -200] = IMAGE_ID if kind == 'image' else VIDEO_ID
    out = dict(input_ids=ids, attention_mask=inputs['attention_mask'])
    if kind == 'image':
        out['pixel_values'] = pixels[0][None]
        out['image_sizes'] = torch.as_tensor(inputs['image_sizes'])[:1]
    else:
        out['pixel_values_videos'] = pixels[0][None]
    return out


def parity(tmp: str) -> list:
    """The three cases of the module doc, one dict each."""
    import numpy as np
    import torch
    import transformers as tf
    from mmengine.config import Config

    from mmllava.apis.chat_inputs import prepare_chat_inputs
    from mmllava.convert.keymaps import hf_to_mmllava
    from mmllava.registry import MODELS
    from mmllava.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(VQA)
    m = cfg.model
    vision = dict(m.vision_encoder.config, model_type='siglip_vision_model')
    hf_cfg = tf.LlavaOnevisionConfig(
        vision_config=vision, text_config=dict(m.llm.config), image_token_index=IMAGE_ID,
        video_token_index=VIDEO_ID, image_grid_pinpoints=m.anyres.image_grid_pinpoints,
        vision_aspect_ratio=f'anyres_max_{m.anyres.max_num_tiles}', vision_feature_layer=-1,
        vision_feature_select_strategy='full')
    torch.manual_seed(0)
    hf = tf.LlavaOnevisionForConditionalGeneration(hf_cfg).eval()
    cfg.model.tokenizer = dict(type='JSONTokenizer', path=_tokenizer(tmp))
    ours = MODELS.build(cfg.model)
    ours.load_state_dict(hf_to_mmllava(hf.state_dict(), 'llava-hf-v5-memory'), strict=True)
    ours.eval()
    ours.cfg = cfg
    cfg.test_pipeline[0]['num_frames'] = 8
    rng = np.random.RandomState(0)
    cases = [('image 384x384', 'image', rng.randint(0, 256, (384, 384, 3), dtype=np.uint8)),
             ('image 384x1152', 'image', rng.randint(0, 256, (384, 1152, 3), dtype=np.uint8)),
             ('clip 8x384x384', 'video', rng.randint(0, 256, (8, 384, 384, 3), dtype=np.uint8))]
    rows = []
    for name, kind, visual in cases:
        messages = [dict(role='user', content=f'<{kind}>\nWhat is the person doing?')]
        prepared = prepare_chat_inputs(ours, messages,
                                       images=[visual] if kind == 'image' else [],
                                       videos=[visual] if kind == 'video' else [])
        inputs = prepared['inputs']
        hf_in = _hf_inputs(inputs, [kind])
        with torch.no_grad():
            start = time.perf_counter()
            ref = hf(**hf_in).logits
            hf_s = time.perf_counter() - start
            start = time.perf_counter()
            got = ours(inputs, mode='tensor')
            ours_s = time.perf_counter() - start
            ref_ids = hf.generate(**hf_in, max_new_tokens=8, do_sample=False, eos_token_id=None,
                                  pad_token_id=0)[:, hf_in['input_ids'].shape[1]:]
            got_ids = ours.generate(inputs['input_ids'], inputs['attention_mask'],
                                    inputs['pixel_values'], inputs['visual_frames'],
                                    image_sizes=inputs.get('image_sizes'), max_new_tokens=8,
                                    eos_token_id=None)
        rows.append(dict(case=name, tokens=int(inputs['input_ids'].shape[1]),
                         frames=len(inputs['pixel_values']),
                         max_abs_logit_diff=float((got - ref).abs().max()),
                         greedy_equal=got_ids.tolist() == ref_ids.tolist(),
                         forward_s_ours=round(ours_s, 2), forward_s_transformers=round(hf_s, 2)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def lora(tmp: str, steps: int = 3, grad_ckpt: bool = True) -> dict:
    """3 LoRA steps through tools/train.py in a subprocess (see the module doc); the recipe's
    gradient checkpointing on or off."""
    from mmengine.config import Config
    cfg = Config.fromfile(LORA)
    tokenizer = _tokenizer(osp.join(tmp, 'tok'))
    cfg.load_base = None
    cfg.model.tokenizer = dict(type='JSONTokenizer', path=tokenizer)
    cfg.model.llm.gradient_checkpointing = grad_ckpt
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] == 'TokenizeConversation':
            step['tokenizer'] = cfg.model.tokenizer
    cfg.train_dataloader.update(batch_size=1, num_workers=0, persistent_workers=False)
    cfg.train_dataloader['sampler'] = dict(type='DefaultSampler', shuffle=False)
    cfg.train_dataloader.dataset.update(type='TinyLlavaDataset', data_root=osp.join(tmp, 'data'),
                                        split='finetune', ann_file=None, img_prefix='images',
                                        num=steps)
    cfg.optim_wrapper.type = 'OptimWrapper'  # fp32: this CPU has no fast bf16
    cfg.optim_wrapper.accumulative_counts = 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=steps)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 * steps)
    cfg.custom_hooks = []
    cfg.log_processor = dict(by_epoch=False)
    path = osp.join(tmp, 'lora.py')
    cfg.dump(path)
    work = osp.join(tmp, 'work')
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'train.py'), path,
                           '--work-dir', work], capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log = proc.stdout + proc.stderr
    if proc.returncode:
        raise RuntimeError(f'tools/train.py failed:\n{log[-3000:]}')
    times = [float(t) for t in re.findall(r'\btime: ([0-9.]+)', log)]
    losses = [float(v) for v in re.findall(r'\bloss: ([0-9.]+)', log)]
    return dict(steps=steps, gradient_checkpointing=grad_ckpt, seconds_per_step=times,
                losses=losses, wall_s=round(wall, 1), peak_rss_mib=round(peak_mib, 1))


def parse_args(argv=None):
    from mmllava.utils.cli import make_parser
    parser = make_parser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='work_dirs/onevision_real_shape.json')
    parser.add_argument('--skip-parity', action='store_true')
    parser.add_argument('--skip-lora', action='store_true')
    parser.add_argument('--no-grad-ckpt', action='store_true',
                        help='train without the recipe\'s gradient checkpointing')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_lora:  # first: its peak memory is the subprocess's alone
            result['lora'] = lora(tmp, grad_ckpt=not args.no_grad_ckpt)
            print(json.dumps(result['lora']), flush=True)
        if not args.skip_parity:
            result['parity'] = parity(tmp)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'Wrote {args.out}')


if __name__ == '__main__':
    from mmllava.utils.cli import run_cli
    run_cli(main)
