"""A config's memory estimate: what the config says (strategy, precision, batch, lengths).

Reads the config contracts of the training recipes: ``strategy`` (``FSDPStrategy`` with its
``sharding_strategy``, ``DeepSpeedStrategy`` with ``zero_optimization``), the optim wrapper
(``BF16OptimWrapper`` / ``AmpOptimWrapper``: bf16 autocast), ``model.lora``,
``model.llm.quantization_config`` (QLoRA), ``model.llm.gradient_checkpointing``,
``train_dataloader.batch_size`` and the ``max_length`` of ``TokenizeConversation``, and hands
the numbers to :mod:`mmllava.engine.memory_estimate`.
"""
import copy
import re
from typing import List, Optional

from .memory_estimate import Workload, count_model, eval_estimate, training_estimate
from .memory_formulas import GIB, verdict

HARDWARE = (('8xA100-80G', 8, 80.0), ('8xA100-40G', 8, 40.0), ('1x24G', 1, 24.0))
EVAL_TEXT_TOKENS = 256  # a prompt's text beside its visuals (questions, templates)
CANDIDATE_TOKENS = 6  # tokens of a class name's answer, its stop token included
CAPTION_TOKENS = 128  # a stage-1 caption and its template (LCS-558K's are shorter)
# Classes of the action label sets, by the data root's name.
_CLASSES = {'ucf101': 101, 'hmdb51': 51, 'kinetics400': 400, 'sthv2': 174, 'stanford40': 40,
            'mocap': 12}


def _plain(x):
    return x.to_dict() if hasattr(x, 'to_dict') else copy.deepcopy(x)


def _step(pipeline, name: str) -> Optional[dict]:
    for t in pipeline or ():
        if isinstance(t, dict) and t.get('type') == name:
            return t
    return None


def _dataset(loader: dict) -> dict:
    ds = (loader or {}).get('dataset') or {}
    while 'pipeline' not in ds and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']
    return ds


def _text_tokens(ds: dict, tok: dict) -> Optional[tuple]:
    """(text tokens of a sample, labelled tokens of a sample) where the data tell them.

    Action lists: the question (listing the classes when ``question_mode='closed'``) and a
    class name as the answer. ``plain``-template captions (stage-1 pretraining): at most
    ``CAPTION_TOKENS``. Otherwise None: the pipeline's ``max_length`` bounds the sample.
    """
    if ds.get('type') == 'ActionListDataset':
        n = _classes(ds)
        closed = ds.get('question_mode', 'closed') == 'closed'
        return 64 + (CANDIDATE_TOKENS * n if closed else 0), CANDIDATE_TOKENS
    if tok.get('template') == 'plain':
        return CAPTION_TOKENS, CAPTION_TOKENS
    return None


def _classes(ds: dict) -> int:
    root = str(ds.get('data_root', '')).lower()
    return next((v for k, v in _CLASSES.items() if k in root), 256)


def _pipeline(loader: dict) -> list:
    return _dataset(loader).get('pipeline') or []


def build_meta(cfg):
    """The config's model on the meta device, and its counts (no weights are made)."""
    import torch

    import mmllava.models  # noqa: F401  (registers the modules)
    from mmllava.registry import MODELS
    model_cfg = _plain(cfg.model)
    model_cfg['tokenizer'] = None
    llm = model_cfg.get('llm', {})
    quant = llm.pop('quantization_config', None)
    with torch.device('meta'):
        model = MODELS.build(model_cfg)
    counts = count_model(model, lora=model_cfg.get('lora'), quantization=quant)
    return model, counts, model_cfg, quant


def _visuals(pipeline: list, model, model_cfg: dict) -> tuple:
    """(images through the vision tower, placeholder tokens) of one sample."""
    from mmllava.structures import num_visual_tokens
    lv = _step(pipeline, 'LoadVisuals')
    per = model.num_image_tokens
    if lv is not None and lv.get('num_frames', 1) > 1:
        frames = lv['num_frames']
        return frames, num_visual_tokens(lv.get('video_pooling', model_cfg.get('video_pooling')),
                                         frames, lv.get('num_image_tokens', per))
    anyres = model_cfg.get('anyres')
    if anyres:
        tiles = 1 + anyres.get('max_num_tiles', 4)
        return tiles, tiles * per
    return 1, per


def describe(cfg) -> dict:
    """The strategy, precision and options the config trains with."""
    strategy = _plain(cfg.get('strategy') or {})
    kind = strategy.get('type', '')
    optim = _plain(cfg.get('optim_wrapper') or {})
    out = dict(strategy=None, precision='fp32', offload_optimizer=False, offload_param=False,
               buckets={})
    if 'FSDP' in kind:
        wrapper = strategy.get('model_wrapper') or {}
        grad_op = 'GRAD_OP' in str(wrapper.get('sharding_strategy', 'FULL_SHARD'))
        out['strategy'] = 'fsdp_grad_op' if grad_op else 'fsdp_full'
        mp = wrapper.get('mixed_precision') or {}
        out['precision'] = 'bf16' if mp.get('param_dtype') in ('bfloat16', 'float16') else 'fp32'
    elif 'DeepSpeed' in kind:
        ds = {**strategy, **(strategy.get('config') or {})}
        zero = ds.get('zero_optimization') or {}
        out['strategy'] = 'zero3' if zero.get('stage', 0) >= 3 else 'zero2'

        def offloaded(key):
            v = zero.get(key)
            return bool(v) and (v.get('device', 'none') if isinstance(v, dict) else v) != 'none'
        out['offload_optimizer'] = offloaded('offload_optimizer')
        out['offload_param'] = offloaded('offload_param')
        out['buckets'] = {k: zero[k] for k in ('reduce_bucket_size', 'allgather_bucket_size')
                          if isinstance(zero.get(k), (int, float))}
        out['precision'] = 'bf16'
    elif optim.get('type') in ('BF16OptimWrapper', 'AmpOptimWrapper'):
        out['precision'] = 'autocast'
    return out


def estimate_config(cfg, gpus: int = 8, built=None, mode: str = 'train',
                    seq_len: Optional[int] = None) -> dict:
    """Estimate a config: ``mode`` ``'train'`` (a training step) or ``'test'`` (its test loader).

    Args:
        cfg: An mmengine ``Config``.
        gpus: Data-parallel GPUs.
        built: The result of :func:`build_meta` (built once for several estimates).
        mode: ``'train'`` or ``'test'``.
        seq_len: Training tokens per sample (visuals included); by default the data's
            (action lists, captions) or the pipeline's ``max_length``.

    Returns:
        dict: ``items``, ``peak`` (bytes per GPU) and the settings used (``strategy``,
        ``precision``, ``batch``, ``seq_len`` ...).
    """
    model, counts, model_cfg, quant = built or build_meta(cfg)
    if mode == 'test':
        loader = _plain(cfg.get('test_dataloader') or {})
        batch = loader.get('batch_size', 1)
        pipeline = _pipeline(loader)
        images, vis = _visuals(pipeline, model, model_cfg)
        ds = _dataset(loader)
        text = _text_tokens(ds, _step(pipeline, 'TokenizeConversation') or {})
        prompt = min(model.max_length, vis + (text[0] if text else EVAL_TEXT_TOKENS))
        info = dict(mode='test', batch=batch, prompt=prompt, gpus=1, strategy='single')
        act = 2 if quant else None  # 4-bit linears compute (and cache) in bf16
        if ds.get('type') == 'ActionListDataset':
            n = _classes(ds)
            out = eval_estimate(counts, batch, prompt, candidates=[CANDIDATE_TOKENS] * n,
                                images=images, act_bytes=act, group_size=model.class_chunk_size)
            info.update(workload=f'rank {n} classes')
        else:
            new = model.generation_cfg.get('max_new_tokens', 64)
            out = eval_estimate(counts, batch, prompt, new, images=images, act_bytes=act)
            info.update(workload=f'generate {new} tokens')
        return {**out, **info}
    loader = _plain(cfg.get('train_dataloader') or {})
    pipeline = _pipeline(loader) or _plain(cfg.get('train_pipeline') or [])
    tok = _step(pipeline, 'TokenizeConversation') or {}
    seq = tok.get('max_length') or model.max_length
    images, vis = _visuals(pipeline, model, model_cfg)
    d = describe(cfg)
    strategy = d['strategy'] or ('ddp' if gpus > 1 else 'single')
    precision = d['precision']
    if precision == 'fp32' and counts.param_bytes == 2 and not quant:
        precision = 'bf16'
    checkpointing = bool(model_cfg.get('llm', {}).get('gradient_checkpointing'))
    batch = loader.get('batch_size', 1)
    text = _text_tokens(_dataset(loader), tok)
    labelled = seq - vis
    if text:  # the union over the rows of the batch of their labelled positions
        seq, labelled = min(seq, vis + text[0]), batch * text[1]
    if seq_len:
        seq, labelled = seq_len, seq_len - vis
    w = Workload(batch=batch, seq_len=seq, labelled=max(1, min(labelled, seq - 1)),
                 images=images, visual_tokens=min(vis, seq))
    out = training_estimate(counts, w, precision=precision, checkpointing=checkpointing,
                            strategy=strategy, gpus=gpus,
                            offload_optimizer=d['offload_optimizer'],
                            offload_param=d['offload_param'], buckets=d['buckets'])
    out.update(mode='train', strategy=strategy, precision=precision, gpus=gpus,
               batch=w.batch, seq_len=seq, checkpointing=checkpointing,
               lora=bool(counts.lora), qlora=bool(quant), trainable=counts.trainable,
               frozen=counts.frozen)
    return out


def format_report(name: str, est: dict, gpu_gib: float) -> str:
    """The itemized table and the verdict, as text."""
    v = verdict(est['peak'], gpu_gib)
    if est['mode'] == 'train':
        head = (f"{name}: training, {est['strategy']} on {est['gpus']} GPU(s), "
                f"{est['precision']}, batch {est['batch']} x {est['seq_len']} tokens, "
                f"checkpointing {'on' if est['checkpointing'] else 'off'}"
                + (', QLoRA' if est['qlora'] else ', LoRA' if est['lora'] else '')
                + f"; {est['trainable'] / 1e6:,.1f} M trainable, {est['frozen'] / 1e6:,.1f} M "
                'frozen parameters')
    else:
        head = (f"{name}: test, {est['workload']}, batch {est['batch']} x {est['prompt']} "
                'prompt tokens, one GPU')
    lines = [head, f"{'item':<48}{'GiB':>10}"]
    for k, val in est['items'].items():
        lines.append(f'{k:<48}{val / GIB:>10.2f}')
    for k, val in (est.get('activations') or {}).items():
        lines.append(f'  kept: {k:<40}{val / GIB:>10.2f}')
    lines.append(f"{'tensors at the peak':<48}{est['peak'] / GIB:>10.2f}")
    if est.get('host'):
        lines.append(f"{'host (CPU) memory per node, offload':<48}{est['host'] / GIB:>10.2f}")
    lines.append(f"{'with allowances (+10% fragmentation, +1.5 GiB)':<48}{v['need_gib']:>10.2f}")
    lines.append(f"{'fits' if v['fits'] else 'does NOT fit'} a {gpu_gib:g} GB GPU")
    return '\n'.join(lines)


def recipe_table(configs: List[str], hardware=HARDWARE) -> str:
    """The markdown table of training recipes on each hardware: fits or not, GiB per GPU."""
    from mmengine.config import Config
    head = '| config | strategy | ' + ' | '.join(h[0] for h in hardware) + ' |'
    rows = [head, '|' + '---|' * (len(hardware) + 2)]
    for path in configs:
        cfg = Config.fromfile(path)
        built = build_meta(cfg)
        cells, strategy = [], ''
        for _, gpus, gib in hardware:
            est = estimate_config(cfg, gpus=gpus, built=built)
            need = verdict(est['peak'], gib)['need_gib']
            strategy = est['strategy'].replace('single', 'ddp').replace('_', ' ')
            mark = 'fits' if need <= gib else 'no'
            cells.append(f'{mark}, {need:.1f}')
        extra = (' QLoRA' if est['qlora'] else ' LoRA' if est['lora'] else '') + \
            (' ckpt' if est['checkpointing'] else '') + (' offload' if est['host'] else '')
        name = re.sub(r'\.py$', '', path.rsplit('/', 1)[-1])
        rows.append(f'| {name} | {strategy}{extra} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(rows)


def training_configs(folder: str) -> List[str]:
    """The training recipes of a config folder (those with a ``train_dataloader``)."""
    import glob
    import os.path as osp
    paths = sorted(glob.glob(osp.join(folder, '*.py')))
    keep = []
    for p in paths:
        name = osp.basename(p)
        if 'tiny' in name or name.endswith(('_eval.py', '_vqa.py', '_caption.py')):
            continue
        if osp.basename(folder.rstrip('/')) in ('llava_next', 'llava_onevision') and \
                '_lora' not in name:
            continue
        keep.append(p)
    return keep


def replace_section(text: str, title: str, body: str) -> str:
    """``text`` with its markdown section ``## title`` replaced by ``body`` (or appended)."""
    pattern = re.compile(rf'^## {re.escape(title)}\n.*?(?=^## |\Z)', re.S | re.M)
    section = f'## {title}\n\n{body.strip()}\n\n'
    if pattern.search(text):
        return pattern.sub(lambda _: section, text, count=1)
    return text.rstrip('\n') + '\n\n' + section


__all__ = ['HARDWARE', 'build_meta', 'describe', 'estimate_config', 'format_report',
           'recipe_table', 'training_configs', 'replace_section']
