"""Tiny random LLaVA checkpoints in every layout mmllava converts, built offline.

One transformers ``LlavaForConditionalGeneration`` (CLIP 32 wide, 3 layers, 30 px images of
6 px patches; LLaMA 64 wide, 2 layers) with a SentencePiece tokenizer trained here, saved as:

* ``llava-hf``: the classic llava-hf layout (``vision_tower.vision_model.*``), safetensors, the
  tokenizer with ``<image>`` = 1000 and ``<pad>`` = 1001 added as llava-hf does (vocab rows
  padded to 1064), and a ``LlavaProcessor``;
* ``llava-hf-v5``: what transformers 5's ``save_pretrained`` writes (``vision_tower.*``, and
  the tokenizer as ``tokenizer.json`` only);
* ``original`` + ``clip``: the original LLaVA layout (sharded ``pytorch_model-*.bin`` with the
  ``rotary_emb.inv_freq`` buffers old checkpoints carry, ``mm_*`` config keys) and a full HF
  ``CLIPModel`` folder named by ``mm_vision_tower``;
* ``mmpretrain.pth``: mmpretrain's converted LLaVA (``model.lang_encoder.*``, the ViT in
  mmpretrain names).

The key layouts here are written by hand (not by mmllava.convert), so tests check the
converters against an independent statement of each layout.

Also here: the repository's tiny config built the same way for every test that uses it
(:func:`tiny_model`), and helpers to run the tools in-process or as subprocesses.
"""
import contextlib
import copy
import json
import os
import os.path as osp
import random
import shutil

import torch

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
              image_size=30, patch_size=6, hidden_act='quick_gelu', projection_dim=16,
              layer_norm_eps=1e-5)
TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1064, max_position_embeddings=256,
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1,
            eos_token_id=2, pad_token_id=1001)
SP_VOCAB = 1000
IMAGE_TOKEN_ID = 1000
PAD_TOKEN_ID = 1001
NUM_IMAGE_TOKENS = 25  # (30 / 6)^2 patches, CLS dropped

_WORDS = ('the a person man woman dog cat is are running walking jumping image picture what '
          'where who how many colour red green blue of in on at with and this that there '
          'describe answer question short photo shows left right sitting standing ball car '
          'tree sky street people two three holding playing kicking dancing USER ASSISTANT').split()


def _corpus():
    rng = random.Random(0)
    lines = []
    for _ in range(3000):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 12))]
        words += [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz')
                          for _ in range(rng.randint(2, 7))) for _ in range(2)]
        lines.append(' '.join(words) + rng.choice(['.', '?', '!', ',']) + f' {rng.randint(0, 99)}')
    return lines


def train_tokenizer(folder: str) -> str:
    """Train a LLaMA-like BPE SentencePiece model (byte fallback) of 1000 pieces."""
    from mmllava.conversation import train_sentencepiece
    return train_sentencepiece(_corpus(), folder, vocab_size=SP_VOCAB)


def build_hf_model(seed: int = 0, vision: dict = None, **text_overrides):
    """A random transformers ``LlavaForConditionalGeneration`` (eval mode); ``vision``
    replaces :data:`VISION`, ``text_overrides`` update :data:`TEXT`."""
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
    )
    torch.manual_seed(seed)
    cfg = LlavaConfig(vision_config=CLIPVisionConfig(**(vision or VISION)),
                      text_config=LlamaConfig(**{**TEXT, **text_overrides}),
                      image_token_id=IMAGE_TOKEN_ID, projector_hidden_act='gelu',
                      vision_feature_layer=-2, vision_feature_select_strategy='default',
                      image_seq_length=NUM_IMAGE_TOKENS)
    model = LlavaForConditionalGeneration(cfg).eval()
    # Random init leaves norms at one and biases at zero: perturb every tensor so that a
    # mapping mixing up two same-shaped tensors cannot go unnoticed.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def hf_processor(sp_model: str):
    """The llava-hf processor: tokenizer with ``<image>``/``<pad>`` added, CLIP processor."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    from mmllava.convert import hf_tokenizer_from_sentencepiece
    tok = hf_tokenizer_from_sentencepiece(sp_model)
    tok.add_tokens(['<image>'], special_tokens=True)
    tok.add_special_tokens({'pad_token': '<pad>'})
    assert tok.convert_tokens_to_ids(['<image>', '<pad>']) == [IMAGE_TOKEN_ID, PAD_TOKEN_ID]
    size = VISION['image_size']
    image_processor = CLIPImageProcessor(size={'shortest_edge': size},
                                         crop_size={'height': size, 'width': size})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tok,
                          patch_size=VISION['patch_size'],
                          vision_feature_select_strategy='default',
                          num_additional_image_tokens=1)


def _save_safetensors(sd, path):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata={'format': 'pt'})


def write_llava_hf(model, processor, sp_model: str, folder: str, classic: bool = True) -> str:
    """Save as llava-hf, with tokenizer and processor.

    ``classic``: the layout llava-hf's hub folders have (``vision_tower.vision_model.*``, and
    ``tokenizer.model`` beside ``tokenizer.json``); otherwise what transformers 5's
    ``save_pretrained`` writes (``vision_tower.*``, ``tokenizer.json`` only).
    """
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if classic:
        shutil.copyfile(sp_model, osp.join(folder, 'tokenizer.model'))
    if classic:
        from safetensors.torch import load_file
        path = osp.join(folder, 'model.safetensors')
        sd = load_file(path)
        assert not any(k.startswith('vision_tower.vision_model.') for k in sd)
        sd = {('vision_tower.vision_model.' + k[len('vision_tower.'):]
               if k.startswith('vision_tower.') else k): v for k, v in sd.items()}
        _save_safetensors(sd, path)
    return folder


def hf_state_dict(model) -> dict:
    """The classic llava-hf keys of a transformers-5 model, written out by hand."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith('model.language_model.'):
            k = 'language_model.model.' + k[len('model.language_model.'):]
        elif k.startswith('lm_head.'):
            k = 'language_model.' + k
        elif k.startswith('model.multi_modal_projector.'):
            k = k[len('model.'):]
        elif k.startswith('model.vision_tower.'):
            k = 'vision_tower.vision_model.' + k[len('model.vision_tower.'):]
        else:
            raise KeyError(k)
        out[k] = v.detach().clone()
    return out


def write_original(model, sp_model: str, folder: str, clip_folder: str,
                   vocab_rows: int = None) -> str:
    """The original LLaVA layout (sharded .bin) and a full HF CLIPModel folder.

    ``vocab_rows`` keeps only the first rows of the embeddings and LM head, as an original
    checkpoint has LLaMA's rows only (32000; here :data:`SP_VOCAB`).
    """
    from transformers import CLIPConfig, CLIPModel
    sd = hf_state_dict(model)
    if vocab_rows is not None:
        for key in ('language_model.model.embed_tokens.weight', 'language_model.lm_head.weight'):
            sd[key] = sd[key][:vocab_rows].clone()
    llm = {}
    for k, v in sd.items():
        if k.startswith('language_model.model.'):
            llm['model.' + k[len('language_model.model.'):]] = v
        elif k == 'language_model.lm_head.weight':
            llm['lm_head.weight'] = v
        elif k.startswith('multi_modal_projector.linear_'):
            idx = {'1': '0', '2': '2'}[k[len('multi_modal_projector.linear_')]]
            llm['model.mm_projector.' + idx + k[len('multi_modal_projector.linear_1'):]] = v
    # The stand-in's own sizes (TEXT and VISION unless build_hf_model was given others).
    text = dict(TEXT, **{k: getattr(model.config.text_config, k) for k in TEXT
                         if k != 'rope_theta'})
    vision = {k: getattr(model.config.vision_config, k) for k in VISION}
    head_dim = text['hidden_size'] // text['num_attention_heads']
    for i in range(text['num_hidden_layers']):  # transformers < 4.31 saved these buffers
        llm[f'model.layers.{i}.self_attn.rotary_emb.inv_freq'] = 1.0 / (10000 ** (
            torch.arange(0, head_dim, 2).float() / head_dim))
    os.makedirs(folder, exist_ok=True)
    keys = sorted(llm)
    shards = {'pytorch_model-00001-of-00002.bin': keys[:len(keys) // 2],
              'pytorch_model-00002-of-00002.bin': keys[len(keys) // 2:]}
    weight_map = {}
    for name, names in shards.items():
        torch.save({k: llm[k] for k in names}, osp.join(folder, name))
        weight_map.update({k: name for k in names})
    with open(osp.join(folder, 'pytorch_model.bin.index.json'), 'w') as f:
        json.dump(dict(metadata={}, weight_map=weight_map), f)
    config = dict(architectures=['LlavaLlamaForCausalLM'], model_type='llava', **text,
                  hidden_act='silu')
    if vocab_rows is not None:
        config['vocab_size'] = vocab_rows
    config.update(pad_token_id=0, mm_hidden_size=vision['hidden_size'],
                  mm_projector_type='mlp2x_gelu', mm_vision_select_layer=-2,
                  mm_vision_select_feature='patch', mm_vision_tower=clip_folder,
                  mm_use_im_start_end=False, mm_use_im_patch_token=False,
                  image_aspect_ratio='pad', tokenizer_model_max_length=256)
    with open(osp.join(folder, 'config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(sp_model, osp.join(folder, 'tokenizer.model'))

    # A full CLIPModel (text tower, projections, logit scale) whose vision part is ours.
    clip = CLIPModel(CLIPConfig(vision_config=vision, text_config=dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        vocab_size=50, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        projection_dim=16))
    clip_sd = {k: v for k, v in clip.state_dict().items() if not k.startswith('vision_model.')}
    clip_sd.update({k[len('vision_tower.'):]: v for k, v in sd.items()
                    if k.startswith('vision_tower.')})
    os.makedirs(clip_folder, exist_ok=True)
    clip.config.save_pretrained(clip_folder)
    _save_safetensors(clip_sd, osp.join(clip_folder, 'model.safetensors'))
    return folder


def hf_model_with_rows(model, rows: int, image_token_id: int):
    """transformers' reference for an original checkpoint of ``rows`` vocabulary rows: the same
    weights, the rows cut, the image placeholder an id inside them (its embedding is replaced
    by image features, so any id does)."""
    from transformers import LlavaForConditionalGeneration
    cfg = copy.deepcopy(model.config)
    cfg.text_config.vocab_size = rows
    cfg.text_config.pad_token_id = 0  # the original pads with unk
    cfg.image_token_id = image_token_id
    cut = LlavaForConditionalGeneration(cfg).eval()
    sd = {k: (v[:rows] if k in ('model.language_model.embed_tokens.weight', 'lm_head.weight')
              else v) for k, v in model.state_dict().items()}
    cut.load_state_dict(sd)
    return cut


def write_mmpretrain(model, path: str) -> str:
    """mmpretrain's converted LLaVA: ``model.lang_encoder.*`` and the ViT in its names."""
    from mmllava.convert import hf_clip_to_mmpretrain_vit
    sd = hf_state_dict(model)
    out = {}
    for k, v in sd.items():
        if k.startswith('language_model.'):
            out['model.lang_encoder.' + k[len('language_model.'):]] = v
        elif k.startswith('multi_modal_projector.linear_'):
            idx = {'1': '0', '2': '2'}[k[len('multi_modal_projector.linear_')]]
            rest = k[len('multi_modal_projector.linear_1'):]
            out['model.lang_encoder.model.mm_projector.' + idx + rest] = v
    vit = hf_clip_to_mmpretrain_vit({k[len('vision_tower.'):]: v for k, v in sd.items()
                                     if k.startswith('vision_tower.')})
    out.update({'model.vision_tower.' + k: v for k, v in vit.items()})
    torch.save(out, path)
    return path


def random_images(n: int, seed: int = 0):
    """``n`` random 30x30 RGB images as uint8 (3, H, W) tensors and as PIL images."""
    from PIL import Image
    g = torch.Generator().manual_seed(seed)
    size = VISION['image_size']
    tensors = [torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
               for _ in range(n)]
    pils = [Image.fromarray(t.permute(1, 2, 0).numpy()) for t in tensors]
    return tensors, pils


def build_all(root: str) -> dict:
    """Build every layout under ``root``; returns their paths and the reference objects."""
    sp_model = train_tokenizer(osp.join(root, 'sp'))
    model = build_hf_model()
    processor = hf_processor(sp_model)
    paths = dict(sp_model=sp_model)
    paths['llava-hf'] = write_llava_hf(model, processor, sp_model, osp.join(root, 'llava-hf'))
    paths['llava-hf-v5'] = write_llava_hf(model, processor, sp_model,
                                          osp.join(root, 'llava-hf-v5'), classic=False)
    paths['clip'] = osp.join(root, 'clip')
    paths['original'] = write_original(model, sp_model, osp.join(root, 'original'),
                                       paths['clip'])
    paths['mmpretrain'] = write_mmpretrain(model, osp.join(root, 'mmpretrain.pth'))
    return dict(paths=paths, model=model, processor=processor)


_SHARED = {}


def shared_build() -> dict:
    """:func:`build_all` once per test session, with every layout converted in-process.

    Returns:
        dict: ``paths`` (sources), ``model`` (the transformers reference), ``processor``,
        ``root``, and ``converted`` (format -> mmllava folder).
    """
    if not _SHARED:
        import atexit
        import tempfile

        from mmllava.convert import convert_to_mmllava
        root = tempfile.mkdtemp(prefix='mmllava-fixtures-')
        atexit.register(shutil.rmtree, root, True)
        built = build_all(root)
        paths = built['paths']
        converted = {}
        for fmt in ('llava-hf', 'llava-hf-v5', 'original', 'mmpretrain'):
            kwargs = {}
            if fmt == 'mmpretrain':
                kwargs = dict(arch_config=paths['llava-hf'], tokenizer=paths['sp_model'])
            out = osp.join(root, 'converted', fmt)
            convert_to_mmllava(paths[fmt], out, verbose=False, **kwargs)
            converted[fmt] = out
        _SHARED.update(built, root=root, converted=converted)
    return _SHARED


# ------------------------------------------------------------------ tools/test.py end to end
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = osp.join(_ROOT, 'configs', 'llava', 'llava-tiny_vqa.py')


def tiny_model(seed: int = 0, **kwargs):
    """The tiny config's LLaVA with seeded random weights, as the API tests use it.

    Args:
        seed (int): Seeds torch before the weights are drawn, so the model (and so its
            greedy answers) is the same in every run.
        **kwargs: :func:`mmllava.apis.get_model` keywords (``generation_cfg``,
            ``class_chunk_size`` ...).

    Returns:
        torch.nn.Module: The model :func:`mmllava.apis.get_model` builds, with its tokenizer.
    """
    from mmllava.apis import get_model
    torch.manual_seed(seed)
    return get_model(TINY_CONFIG, **kwargs)


def write_tiny_eval_config(path, converted: str, dataset: dict, evaluator: dict,
                           batch_size: int, max_new_tokens: int, load_step: dict = None) -> str:
    """An eval config for the converted tiny model: LLaVA-1.5's pipeline at 30 px, in order.

    ``load_step`` replaces the first step, ``LoadImages`` (e.g. ``LoadVisuals`` for clips).
    """
    pipeline = [
        load_step or dict(type='LoadImages'),
        dict(type='PadToSquare', background=(122, 116, 104)),
        dict(type='CLIPResizeCrop', size=30),
        dict(type='TokenizeConversation', tokenizer=None, template='vicuna_v1',
             add_generation_prompt=True),
        dict(type='PackLlavaInputs'),
    ]
    loader = dict(batch_size=batch_size, num_workers=0,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='llava_collate'),
                  dataset=dict(dataset, test_mode=True, pipeline=pipeline))
    lines = [f'_base_ = [{osp.join(str(converted), "config.py")!r}]',
             f'model = dict(generation_cfg=dict(max_new_tokens={max_new_tokens}))',
             f'test_dataloader = {loader!r}', f'test_evaluator = {evaluator!r}',
             "test_cfg = dict(type='TestLoop')"]
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return str(path)


def load_script(relpath: str):
    """A script of the repository (``'tools/train.py'``) imported as a module, to call its
    ``main(argv)`` in-process (no interpreter start, no repeated imports)."""
    import importlib.util
    path = osp.join(_ROOT, relpath)
    spec = importlib.util.spec_from_file_location(osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def serving_in_thread(srv):
    """A ``tools/serve.py`` ``LlavaServer`` served from a thread of this process while the
    block runs (started before it, shut down and closed after)."""
    import threading
    import time
    thread = threading.Thread(target=srv.serve_forever, name='serve-test', daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.uvicorn.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.uvicorn.started
    try:
        yield srv
    finally:
        srv.shutdown()
        thread.join(timeout=30)
        srv.server_close()


def run_script(relpath: str, argv) -> int:
    """A script's ``main(argv)`` run in-process the way its ``__main__`` runs it (through
    :func:`mmllava.utils.cli.run_cli`: one-line errors); returns the exit status."""
    from mmllava.utils.cli import run_cli
    module = load_script(relpath)
    argv = [str(a) for a in argv]
    try:
        run_cli(lambda: module.main(argv), argv, tool=relpath)
    except SystemExit as e:
        return e.code
    raise AssertionError('run_cli always exits')


def load_tool_module(relpath: str):
    """A module or package folder beside the scripts (``'tools/x/mocap_actions'``), imported.

    Tools are not a package: a script run as ``python tools/x/y.py`` imports its neighbours
    through its own folder on ``sys.path``. This puts that folder there the same way and
    imports by name, so a script loaded later shares the very same module, not a copy.
    """
    import importlib
    import sys
    folder, name = osp.split(osp.normpath(osp.join(_ROOT, relpath)))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(osp.splitext(name)[0])


def run_test_tool(config, weights, work_dir, *extra):
    """``python tools/test.py CONFIG WEIGHTS --work-dir DIR ...`` in a subprocess."""
    import subprocess
    import sys
    tests = osp.join(_ROOT, 'tests')
    env = dict(os.environ, PYTHONPATH=f'{tests}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
               OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    return subprocess.run(
        [sys.executable, osp.join(_ROOT, 'tools', 'test.py'), str(config), str(weights),
         '--work-dir', str(work_dir), *map(str, extra)],
        env=env, capture_output=True, text=True, timeout=300, cwd=_ROOT)
