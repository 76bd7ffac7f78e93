"""tools/model_converters: llava_to_mmllava.py and mmllava_to_hf.py, and mmllava.convert."""
import contextlib
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from fixtures_llava import (
    IMAGE_TOKEN_ID,
    PAD_TOKEN_ID,
    TEXT,
    VISION,
    load_script,
    random_images,
    shared_build,
)
from mmengine.config import Config
from safetensors.torch import load_file

from mmllava.convert import (
    KeyMappingError,
    build_config_text,
    convert_to_mmllava,
    detect_layout,
    export_to_hf,
    hf_clip_to_mmpretrain_vit,
    hf_to_mmllava,
    mmllava_to_hf,
    mmllava_to_original,
    mmpretrain_vit_to_hf_clip,
    original_to_mmllava,
    pad_vocab_rows,
)
from mmllava.engine.checkpoint import StateDictMismatchError, load_model_weights, load_weights

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TO_MMLLAVA = osp.join(ROOT, 'tools', 'model_converters', 'llava_to_mmllava.py')
TO_HF = osp.join(ROOT, 'tools', 'model_converters', 'mmllava_to_hf.py')
FORMATS = ('llava-hf', 'llava-hf-v5', 'original', 'mmpretrain')


# Each subprocess pays ~6 s of imports (torch, transformers, mmengine, mmpretrain) on 2 cores:
# two run as real subprocesses, the other formats go through the same CLI main() in-process.
SUBPROCESS = ('mmpretrain', 'to-hf')


def load_cli(path):
    return load_script(osp.relpath(path, ROOT))


@pytest.fixture(scope='module')
def cli(tmp_path_factory):
    """Run every CLI conversion; returns (built, {name: (out_dir, stdout)})."""
    built = shared_build()
    paths = built['paths']
    tmp = tmp_path_factory.mktemp('cli')
    jobs = {}
    for fmt in FORMATS:
        args = [TO_MMLLAVA, paths[fmt], str(tmp / fmt)]
        if fmt == 'mmpretrain':
            args += ['--arch-config', osp.join(paths['llava-hf'], 'config.json'),
                     '--tokenizer', paths['sp_model']]
        jobs[fmt] = args
    src = built['converted']['llava-hf']
    jobs['to-hf'] = [TO_HF, osp.join(src, 'config.py'), osp.join(src, 'model.safetensors'),
                     str(tmp / 'to-hf')]
    env = dict(os.environ, OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    procs = {name: subprocess.Popen([sys.executable] + jobs[name], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
             for name in SUBPROCESS}
    results = {}
    for name, args in jobs.items():
        if name in SUBPROCESS:
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            load_cli(args[0]).main(args[1:])
        results[name] = (args[2], out.getvalue())
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f'{name} failed:\n{out}'
        results[name] = (str(tmp / name), out)
    return built, results


def tensors(path):
    return load_file(path) if path.endswith('.safetensors') else load_weights(path)


# ---------------------------------------------------------------------------- CLIs
@pytest.mark.parametrize('fmt', FORMATS)
def test_cli_to_mmllava(cli, fmt):
    built, results = cli
    out_dir, stdout = results[fmt]
    assert 'Wrote' in stdout and 'model.safetensors' in stdout
    files = set(os.listdir(out_dir))
    assert [f for f in files if f.endswith(('.safetensors', '.bin', '.pth'))] == \
        ['model.safetensors']
    # transformers 5 saves no tokenizer.model: the conversion then names tokenizer.json.
    tokenizer = 'tokenizer.json' if fmt == 'llava-hf-v5' else 'tokenizer.model'
    assert {'config.py', tokenizer} <= files
    if fmt.startswith('llava-hf'):
        assert {'tokenizer.json', 'tokenizer_config.json'} <= files
    cfg = Config.fromfile(osp.join(out_dir, 'config.py'))
    assert cfg.model.tokenizer['type'] == ('JSONTokenizer' if fmt == 'llava-hf-v5'
                                           else 'SentencePieceTokenizer')
    # The CLI writes what the in-process conversion writes (that one passes the parity tests).
    ref = built['converted'][fmt]
    got, want = (tensors(osp.join(d, 'model.safetensors')) for d in (out_dir, ref))
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    strip = lambda t: t.split('\n', 3)[3]  # noqa: E731  (header names the source)
    with open(osp.join(out_dir, 'config.py')) as f1, open(osp.join(ref, 'config.py')) as f2:
        assert strip(f1.read()) == strip(f2.read())


def test_config_is_complete_and_names_its_tokenizer(cli):
    built, results = cli
    out_dir = results['llava-hf'][0]
    cfg = Config.fromfile(osp.join(out_dir, 'config.py'))
    assert cfg.model.tokenizer == dict(type='SentencePieceTokenizer',
                                       model_file=osp.join(out_dir, 'tokenizer.model'))
    assert cfg.model.vision_encoder.config.image_size == VISION['image_size']
    assert cfg.model.vision_encoder.config.num_attention_heads == VISION['num_attention_heads']
    llm = cfg.model.llm.config
    assert (llm.vocab_size, llm.num_key_value_heads, llm.rope_theta, llm.rms_norm_eps) == \
        (1064, TEXT['num_key_value_heads'], 1e4, 1e-5)
    assert cfg.model.data_preprocessor.pad_token_id == PAD_TOKEN_ID
    sizes = [s['size'] for s in cfg.test_pipeline if s['type'] == 'CLIPResizeCrop']
    assert sizes == [VISION['image_size']]
    # Building it and loading the weights strictly works without any path of ours.
    from mmllava.registry import MODELS
    from mmllava.utils import register_all_modules
    register_all_modules()
    model = MODELS.build(cfg.model)
    load_model_weights(model, osp.join(out_dir, 'model.safetensors'))
    assert model.tokenizer.encode('the dog') == built['processor'].tokenizer(
        'the dog', add_special_tokens=False).input_ids
    # The transformers-5 folder (tokenizer.json only) converts with the same ids and pad.
    v5 = Config.fromfile(osp.join(results['llava-hf-v5'][0], 'config.py'))
    assert v5.model.tokenizer == dict(type='JSONTokenizer',
                                      path=osp.join(results['llava-hf-v5'][0], 'tokenizer.json'))
    tok = MODELS.build(v5.model).tokenizer
    text = 'the dog is running in the street, 2 people?'
    assert tok.encode(text) == model.tokenizer.encode(text) == built['processor'].tokenizer(
        text, add_special_tokens=False).input_ids
    assert tok.pad_token_id == PAD_TOKEN_ID == v5.model.data_preprocessor.pad_token_id


def test_config_is_written_over_the_base_it_is_given():
    """A linear projector over the default base; a zoo name's config keeps its task."""
    arch = dict(vision=dict(VISION, num_channels=3), select_layer=-2, select_feature='patch',
                projector_type='linear', llm=dict(TEXT, model_type='llama'))
    text = build_config_text(arch)
    assert 'llava/llava-7b-v1.5_vqa.py' in text.split('\n')[1]
    cfg = Config.fromstring(text.replace('{{ fileDirname }}', '/x'), '.py')
    assert cfg.model.projector.projector_type == 'linear'
    assert cfg.model.task == 'vqa' and cfg.model.tokenizer.type == 'SentencePieceTokenizer'
    text = build_config_text(arch, tokenizer='tokenizer.json',
                             base='llava/llava-7b-v1.5_caption.py')
    cfg = Config.fromstring(text.replace('{{ fileDirname }}', '/x'), '.py')
    assert cfg.model.task == 'caption' and cfg.model.tokenizer == dict(
        type='JSONTokenizer', path='/x/tokenizer.json')
    assert cfg.model.vision_encoder.config.image_size == VISION['image_size']
    with pytest.raises(ValueError, match='tokenizer must be one of'):
        build_config_text(arch, tokenizer='vocab.txt')


def test_llava_1_start_end_tokens_are_refused(tmp_path):
    """LLaVA-1's mm_use_im_start_end prompts are not reproduced: the conversion says so."""
    src = tmp_path / 'v1'
    shutil.copytree(shared_build()['paths']['original'], src)
    config = json.loads((src / 'config.json').read_text())
    config['mm_use_im_start_end'] = True
    (src / 'config.json').write_text(json.dumps(config))
    with pytest.raises(ValueError, match='mm_use_im_start_end=True'):
        convert_to_mmllava(str(src), str(tmp_path / 'out'), verbose=False)


def test_round_trip_llava_hf_is_bit_identical(cli):
    """llava-hf -> mmllava -> llava-hf gives back the same tensors, and transformers loads it."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration
    built, results = cli
    out_dir, stdout = results['to-hf']
    assert 'Wrote' in stdout
    src = load_file(osp.join(built['paths']['llava-hf'], 'model.safetensors'))
    back = load_file(osp.join(out_dir, 'model.safetensors'))
    assert back.keys() == src.keys()
    for key in src:
        assert src[key].dtype == back[key].dtype and torch.equal(src[key], back[key]), key
    with open(osp.join(out_dir, 'config.json')) as f:
        config = json.load(f)
    assert config['image_token_index'] == IMAGE_TOKEN_ID  # transformers' on-disk name
    assert config['text_config']['vocab_size'] == 1064
    model, info = LlavaForConditionalGeneration.from_pretrained(out_dir, output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys'] and \
        not info['mismatched_keys'], info
    # The processor loads offline and prepares inputs exactly as the source's.
    processor = AutoProcessor.from_pretrained(out_dir)
    _, pils = random_images(2, seed=5)
    texts = ['USER: <image>\nWhat? ASSISTANT:', 'USER: <image>\nWho is there? ASSISTANT:']
    built['processor'].tokenizer.padding_side = processor.tokenizer.padding_side = 'left'
    got = processor(text=texts, images=pils, return_tensors='pt', padding=True)
    want = built['processor'](text=texts, images=pils, return_tensors='pt', padding=True)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    with torch.no_grad():
        torch.testing.assert_close(model(**got).logits, built['model'](**want).logits,
                                   atol=0, rtol=0)


# ---------------------------------------------------------------------------- export
def test_export_adds_image_token_and_pads_rows(tmp_path):
    """A tokenizer without <image> (original LLaVA) and too few rows: llava-hf's additions."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from mmllava.registry import MODELS
    built = shared_build()
    src = built['converted']['original']
    cfg = Config.fromfile(osp.join(src, 'config.py'))
    cfg.model.llm.config.vocab_size = 1000  # exactly the SentencePiece pieces
    cfg.model.tokenizer = None
    torch.manual_seed(0)
    ours = MODELS.build(cfg.model).eval()
    weights = str(tmp_path / 'w.safetensors')
    from mmllava.engine.checkpoint import save_weights
    save_weights(ours.state_dict(), weights)
    info = export_to_hf(cfg, weights, str(tmp_path / 'hf'), tokenizer=built['paths']['sp_model'],
                        verbose=False)
    assert info['image_token_id'] == 1000 and info['vocab_rows'] == 1024
    hf, loading = LlavaForConditionalGeneration.from_pretrained(str(tmp_path / 'hf'),
                                                                output_loading_info=True)
    assert not any(loading[k] for k in ('missing_keys', 'unexpected_keys', 'mismatched_keys'))
    processor = AutoProcessor.from_pretrained(str(tmp_path / 'hf'))
    assert processor.tokenizer.convert_tokens_to_ids(['<image>', '<pad>']) == [1000, 1001]
    _, pils = random_images(1, seed=3)
    batch = processor(text=['USER: <image>\nWhat is it? ASSISTANT:'], images=pils,
                      return_tensors='pt')
    ids = batch['input_ids'].masked_fill(batch['input_ids'] == 1000, -200)
    with torch.no_grad():
        want = hf(**batch).logits
        got = ours(dict(input_ids=ids, pixel_values=batch['pixel_values']), mode='tensor')
        torch.testing.assert_close(want[..., :1000], got, atol=1e-4, rtol=0)
        hf_gen = hf.generate(**batch, max_new_tokens=8, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[:, ids.shape[1]:]
        ours_gen = ours.generate(ids, pixel_values=batch['pixel_values'], max_new_tokens=8,
                                 eos_token_id=None)
    assert hf_gen.tolist() == ours_gen.tolist()


def test_pad_vocab_rows_uses_the_mean_and_keeps_sufficient_rows():
    w = torch.randn(10, 4)
    sd = {'language_model.model.embed_tokens.weight': w, 'language_model.lm_head.weight': w * 2}
    assert pad_vocab_rows(dict(sd), 10) == 10
    assert pad_vocab_rows(sd, 12, multiple=8) == 16
    assert torch.equal(sd['language_model.model.embed_tokens.weight'][:10], w)
    torch.testing.assert_close(sd['language_model.lm_head.weight'][15], (w * 2).mean(0))


def test_export_rejects_weights_of_another_architecture(tmp_path):
    built = shared_build()
    src = built['converted']['llava-hf']
    cfg = Config.fromfile(osp.join(src, 'config.py'))
    cfg.model.llm.config.intermediate_size = 96
    with pytest.raises(StateDictMismatchError, match=r'mlp.gate_proj.weight: expected \[96, 64\]'
                       r', got \[128, 64\]'):
        export_to_hf(cfg, osp.join(src, 'model.safetensors'), str(tmp_path / 'x'), verbose=False)


# ---------------------------------------------------------------------------- errors
def test_weights_of_another_architecture_are_refused():
    """Loading converted tiny weights into a wider model lists every mismatched key."""
    from mmllava.registry import MODELS
    built = shared_build()
    src = built['converted']['llava-hf']
    cfg = Config.fromfile(osp.join(src, 'config.py'))
    cfg.model.tokenizer = None
    cfg.model.llm.config.update(hidden_size=96, num_attention_heads=6, num_key_value_heads=3)
    cfg.model.llm.config.num_hidden_layers = 3
    model = MODELS.build(cfg.model)
    before = model.llm.lm_head.weight.clone()
    with pytest.raises(StateDictMismatchError) as err:
        load_model_weights(model, osp.join(src, 'model.safetensors'))
    msg = str(err.value)
    assert 'llm.model.embed_tokens.weight: expected [1064, 96], got [1064, 64]' in msg
    assert 'projector.0.weight: expected [96, 32], got [64, 32]' in msg
    assert 'missing keys' in msg and 'llm.model.layers.2.mlp.up_proj.weight' in msg
    assert torch.equal(model.llm.lm_head.weight, before)  # nothing loaded


def test_original_without_local_vision_tower(tmp_path):
    built = shared_build()
    src = built['paths']['original']
    folder = tmp_path / 'original'
    folder.mkdir()
    for name in os.listdir(src):
        os.symlink(osp.join(src, name), folder / name)
    os.remove(folder / 'config.json')
    with open(osp.join(src, 'config.json')) as f:
        config = json.load(f)
    config['mm_vision_tower'] = 'openai/clip-vit-large-patch14-336'
    with open(folder / 'config.json', 'w') as f:
        json.dump(config, f)
    with pytest.raises(FileNotFoundError, match='--vision-tower'):
        convert_to_mmllava(str(folder), str(tmp_path / 'out'), verbose=False)
    # Naming the tower explicitly works.
    convert_to_mmllava(str(folder), str(tmp_path / 'out'), verbose=False,
                       vision_tower=built['paths']['clip'])
    got = load_file(str(tmp_path / 'out' / 'model.safetensors'))
    want = load_file(osp.join(built['converted']['original'], 'model.safetensors'))
    assert all(torch.equal(got[k], want[k]) for k in want) and got.keys() == want.keys()


def test_unmapped_keys_are_named_with_shapes():
    sd = {'language_model.model.norm.weight': torch.ones(4),
          'language_model.extra_head.weight': torch.ones(3, 2)}
    with pytest.raises(KeyMappingError, match=r'language_model.extra_head.weight: \[3, 2\]'):
        hf_to_mmllava(sd, 'llava-hf')
    with pytest.raises(KeyMappingError, match='text_model_stray'):
        original_to_mmllava({'model.norm.weight': torch.ones(4)},
                            {'vision_model.x': torch.ones(1), 'text_model_stray': torch.ones(1)})


def test_mmpretrain_without_vision_tower_needs_one(tmp_path):
    built = shared_build()
    sd = load_weights(built['paths']['mmpretrain'])
    llm_only = {k: v for k, v in sd.items() if not k.startswith('model.vision_tower.')}
    torch.save(llm_only, str(tmp_path / 'llm.pth'))
    with pytest.raises(ValueError, match='--vision-tower'):
        convert_to_mmllava(str(tmp_path / 'llm.pth'), str(tmp_path / 'out'), verbose=False)
    # A tower in mmpretrain ViT names, as mmpretrain's CLIP conversion writes it (prefixed
    # visual., final_norm=False: no ln1), plus the CLIP text keys it keeps.
    vit = {'visual.' + k: v for k, v in sd.items() if k.startswith('model.vision_tower.')}
    vit = {k.replace('visual.model.vision_tower.', 'visual.'): v for k, v in vit.items()
           if not k.endswith(('.ln1.weight', '.ln1.bias')) or '.layers.' in k}
    vit['token_embedding.weight'] = torch.zeros(5, 4)
    torch.save(vit, str(tmp_path / 'clip.pth'))
    result = convert_to_mmllava(str(tmp_path / 'llm.pth'), str(tmp_path / 'out'), verbose=False,
                                vision_tower=str(tmp_path / 'clip.pth'),
                                arch_config=built['paths']['llava-hf'])
    assert any('post_layernorm' in note for note in result['notes'])
    got = load_file(str(tmp_path / 'out' / 'model.safetensors'))
    want = load_file(osp.join(built['converted']['mmpretrain'], 'model.safetensors'))
    for k in want:
        if 'post_layernorm' not in k:
            assert torch.equal(got[k], want[k]), k
    assert torch.equal(got['vision_tower.vision_model.post_layernorm.weight'], torch.ones(32))


def test_sharded_bin_llava_hf_source(tmp_path):
    """A llava-hf folder with sharded pytorch_model-*.bin converts like the safetensors one."""
    built = shared_build()
    src = built['paths']['llava-hf']
    sd = load_file(osp.join(src, 'model.safetensors'))
    keys = sorted(sd)
    weight_map = {}
    for i, part in enumerate((keys[:40], keys[40:])):
        name = f'pytorch_model-0000{i + 1}-of-00002.bin'
        torch.save({k: sd[k] for k in part}, str(tmp_path / name))
        weight_map.update({k: name for k in part})
    (tmp_path / 'pytorch_model.bin.index.json').write_text(json.dumps({'weight_map': weight_map}))
    for name in ('config.json', 'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json'):
        os.symlink(osp.join(src, name), tmp_path / name)
    result = convert_to_mmllava(str(tmp_path), str(tmp_path / 'out'), verbose=False)
    assert result['format'] == 'llava-hf'
    got = load_file(str(tmp_path / 'out' / 'model.safetensors'))
    want = load_file(osp.join(built['converted']['llava-hf'], 'model.safetensors'))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


# ---------------------------------------------------------------------------- key maps
def test_layout_detection_and_inverse_maps():
    built = shared_build()
    ours = load_file(osp.join(built['converted']['llava-hf'], 'model.safetensors'))
    hf = mmllava_to_hf(ours)
    assert detect_layout(hf) == 'llava-hf' and detect_layout(ours) == 'mmllava'
    v5 = {k.replace('vision_tower.vision_model.', 'vision_tower.'): v for k, v in hf.items()}
    assert detect_layout(v5) == 'llava-hf-v5'
    memory = built['model'].state_dict()
    assert detect_layout(memory) == 'llava-hf-v5-memory'
    for sd in (hf, v5, memory):
        back = hf_to_mmllava(sd)
        assert back.keys() == ours.keys() and all(torch.equal(back[k], ours[k]) for k in ours)
    llm, vision = mmllava_to_original(ours)
    assert 'model.mm_projector.0.weight' in llm and 'lm_head.weight' in llm
    assert original_to_mmllava(llm, vision).keys() == ours.keys()


def test_mmpretrain_vit_mapping_matches_mmpretrain_vision_transformer():
    """Our ViT name mapping against mmpretrain's own VisionTransformer and HF's CLIP."""
    from mmpretrain.models import VisionTransformer
    from transformers import CLIPVisionConfig, CLIPVisionModel
    torch.manual_seed(0)
    vit = VisionTransformer(
        arch=dict(embed_dims=32, num_layers=3, num_heads=4, feedforward_channels=64),
        img_size=30, patch_size=6, pre_norm=True, final_norm=True, out_type='raw',
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')), patch_cfg=dict(bias=False))
    vit.eval()  # mmpretrain's train() returns None: no chaining
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf_sd = mmpretrain_vit_to_hf_clip(vit.state_dict())
    clip = CLIPVisionModel(CLIPVisionConfig(**VISION)).eval()
    # transformers 5's CLIPVisionModel keeps no vision_model level in memory.
    missing, unexpected = clip.load_state_dict(
        {k[len('vision_model.'):]: v for k, v in hf_sd.items()}, strict=False)
    assert not unexpected and all('position_ids' in k for k in missing)
    x = torch.randn(2, 3, 30, 30)
    with torch.no_grad():
        want = vit(x)[-1]  # final_norm: after ln1, i.e. CLIP's post_layernorm on every token
        got = clip.post_layernorm(clip(pixel_values=x).last_hidden_state)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    back = hf_clip_to_mmpretrain_vit(hf_sd)
    assert back.keys() == vit.state_dict().keys()
    assert all(torch.equal(back[k], vit.state_dict()[k]) for k in back)
