"""Check a config's dataset before training: every sample through the pipeline, one report.

    python tools/analysis_tools/check_dataset.py CONFIG [--split train|val|test] \\
        [--cfg-options train_dataloader.dataset.data_root=DIR ...] [--out report.json]

Reports the sample count; the samples with a missing image, no gpt turn, an ``<image>`` count
unequal to their images, malformed records, labels that end up fully masked, other pipeline
errors (up to 5 example ids each); and token lengths (image tokens included): min, median,
mean, max, and how many are over the model's ``max_position_embeddings``. The exit status is 1
when any problem is found, else 0.
"""
import argparse
import json
import statistics
import sys
from collections import OrderedDict
from typing import List, Optional

from mmllava.utils.cli import add_cfg_options, make_parser, parse_cfg_options, run_cli

NUM_EXAMPLES = 5


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = make_parser(description='Check a dataset before training.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', default='train', choices=['train', 'val', 'test'],
                        help='which dataloader\'s dataset: {split}_dataloader.dataset')
    parser.add_argument('--out', help='also write the report to this JSON file')
    parser.add_argument('--max-samples', type=int, default=None,
                        help='check only the first N samples')
    add_cfg_options(parser)
    args = parser.parse_args(argv)
    args.cfg_options = parse_cfg_options(args.cfg_options)
    return args


def _with_skipping(cfg):
    """A dataset config that collects init-time problems instead of raising, where it can."""
    from mmengine.config import ConfigDict

    from mmllava.datasets import BaseLlavaDataset
    from mmllava.registry import DATASETS

    cfg = ConfigDict(cfg.to_dict() if isinstance(cfg, ConfigDict) else dict(cfg))
    if 'datasets' in cfg:  # ConcatDataset and the like
        cfg['datasets'] = [_with_skipping(c) for c in cfg['datasets']]
        return cfg
    cls = cfg.get('type')
    if isinstance(cls, str):
        cls = DATASETS.get(cls)
    if isinstance(cls, type) and issubclass(cls, BaseLlavaDataset):
        cfg['skip_invalid'] = True
    return cfg


def _leaves(dataset) -> list:
    return [d for sub in dataset.datasets for d in _leaves(sub)] \
        if hasattr(dataset, 'datasets') else [dataset]


def _max_length(cfg) -> Optional[int]:
    try:
        return int(cfg.model.llm.config.max_position_embeddings)
    except (AttributeError, KeyError, TypeError):
        return None


def _lengths_and_labels(results):
    """``(number of input ids, labels or None)`` of a pipeline output (packed or not)."""
    inputs = results.get('inputs') if isinstance(results, dict) else None
    source = inputs if isinstance(inputs, dict) else results
    ids = source.get('input_ids') if isinstance(source, dict) else None
    return (None if ids is None else len(ids)), (source.get('labels')
                                                 if isinstance(source, dict) else None)


def check(dataset, max_length: Optional[int] = None, max_samples: Optional[int] = None,
          progress: bool = True) -> dict:
    """Run every sample of ``dataset`` through its pipeline and count the problems.

    Args:
        dataset: A built dataset (mmllava's, built with ``skip_invalid=True`` so that its
            init-time problems are in ``skipped``; or any mmengine dataset).
        max_length (int, optional): Count samples with more input ids than this.
        max_samples (int, optional): Check only the first samples.
        progress (bool): Show a progress bar.

    Returns:
        dict: The report (see the module doc).
    """
    from mmllava.datasets import PROBLEM_NAMES, classify_error, labels_fully_masked
    from mmllava.datasets.base import FULLY_MASKED, TOO_LONG

    problems = OrderedDict((k, dict(count=0, examples=[])) for k in PROBLEM_NAMES)

    def add(reason, sample_id, message):
        entry = problems.setdefault(reason, dict(count=0, examples=[]))
        entry['count'] += 1
        if len(entry['examples']) < NUM_EXAMPLES:
            entry['examples'].append(dict(sample_id=sample_id, message=message))

    init_skipped = [s for d in _leaves(dataset) for s in getattr(d, 'skipped', [])]
    for s in init_skipped:
        add(s.reason, s.sample_id, s.message)
    num = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    lengths, modalities, num_bad = [], dict(multimodal=0, text_only=0), 0
    from mmengine.utils import ProgressBar
    bar = ProgressBar(num) if progress and num else None
    for idx in range(num):
        info, results = {}, None
        found_before = sum(p['count'] for p in problems.values())
        # The pipeline itself, not dataset[idx]: no skipping to another index here.
        try:
            info = dataset.get_data_info(idx)
            results = dataset.pipeline(info)
        except Exception as e:  # every failure is a finding, reported with its sample id
            add(classify_error(e), info.get('sample_id', idx), f'{type(e).__name__}: {e}')
        sample_id = info.get('sample_id', idx)
        if results is not None:
            length, labels = _lengths_and_labels(results)
            if labels is not None and labels_fully_masked(results):
                add(FULLY_MASKED, sample_id, 'labels are fully masked (nothing to train on)')
            if length is not None:
                lengths.append(length)
                if max_length is not None and length > max_length:
                    add(TOO_LONG, sample_id, f'{length} tokens > max length {max_length}')
            modalities['multimodal' if info.get('images') else 'text_only'] += 1
        num_bad += results is None or sum(p['count'] for p in problems.values()) > found_before
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stdout.write('\n')
    report = OrderedDict(
        num_samples=num + len(init_skipped),
        num_checked=num,
        num_ok=num - num_bad,
        num_problems=sum(p['count'] for p in problems.values()),
        problems={k: v for k, v in problems.items() if v['count']},
        modalities=modalities,
        max_length=max_length,
        lengths=None,
    )
    if lengths:
        report['lengths'] = dict(
            min=min(lengths), median=statistics.median(lengths),
            mean=round(statistics.fmean(lengths), 2), max=max(lengths),
            num_over_max_length=(None if max_length is None else
                                 sum(n > max_length for n in lengths)))
    return report


def format_report(report: dict) -> str:
    """The report as text."""
    from mmllava.datasets import PROBLEM_NAMES

    lines = [f'samples: {report["num_samples"]} (checked through the pipeline: '
             f'{report["num_checked"]}, fine: {report["num_ok"]})',
             f'modalities: {report["modalities"]["multimodal"]} with images, '
             f'{report["modalities"]["text_only"]} text-only']
    if report['lengths']:
        s = report['lengths']
        over = ('' if report['max_length'] is None else
                f', over max length {report["max_length"]}: {s["num_over_max_length"]}')
        lines.append(f'tokens (image tokens included): min {s["min"]}, median {s["median"]}, '
                     f'mean {s["mean"]}, max {s["max"]}{over}')
    if not report['problems']:
        lines.append('problems: none')
    for kind, entry in report['problems'].items():
        lines.append(f'{PROBLEM_NAMES.get(kind, kind)}: {entry["count"]}')
        for ex in entry['examples']:
            lines.append(f'    {ex["sample_id"]!r}: {ex["message"]}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmllava'))
    import mmllava.datasets  # noqa: F401  (registers the datasets)
    from mmllava.registry import DATASETS

    key = f'{args.split}_dataloader'
    if cfg.get(key) is None or cfg[key].get('dataset') is None:
        raise ValueError(f'{args.config} has no {key}.dataset (try another --split)')
    dataset = DATASETS.build(_with_skipping(cfg[key]['dataset']))
    report = check(dataset, max_length=_max_length(cfg), max_samples=args.max_samples)
    report = OrderedDict(config=args.config, split=args.split, **report)
    print(format_report(report))
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(report, f, indent=2, default=str)
    return 1 if report['num_problems'] else 0


if __name__ == '__main__':
    run_cli(main)
