"""Score a predictions file from any model against a benchmark's official annotations.

Examples::

    # the original LLaVA's answers (jsonl of {"question_id", "text"}) on VQAv2 val
    python tools/analysis_tools/eval_predictions.py --metric vqa \\
        --pred answers.jsonl --ann v2_mscoco_val2014_annotations.json
    # tools/test.py --out predictions of ScienceQA-IMG
    python tools/analysis_tools/eval_predictions.py --metric multiple_choice \\
        --pred preds.json --ann scienceqa/problems.json --out metrics.json
    # POPE, the three splits at once (split names from the file names)
    python tools/analysis_tools/eval_predictions.py --metric pope --pred answers.jsonl \\
        --ann coco_pope_adversarial.json --ann coco_pope_popular.json --ann coco_pope_random.json

    # an action model on an mmaction2 video list (label_map.txt beside it, or --label-map)
    python tools/analysis_tools/eval_predictions.py --metric action --pred preds.json \
        --ann mocap_actions/test_list_videos.txt

    # MME: JSON lines of {"category", "image", "question", "prediction"} (or tools/test.py --out,
    # or LLaVA's answers file) against the release folder; keys perception, cognition, per subtask
    python tools/analysis_tools/eval_predictions.py --metric mme --pred answers.jsonl \
        --ann MME_Benchmark_release_version --out metrics.json
    # MMBench dev, CircularEval: tools/test.py --out, or {"index", "prediction"[, "rotation"]} lines
    python tools/analysis_tools/eval_predictions.py --metric mmbench \
        --pred preds.json --ann mmbench/mmbench_dev_20230712.tsv --out metrics.json
    # SEED-Bench v1: LLaVA's answers ({"question_id", "text"}), SEED's upload file
    # ({"question_id", "prediction"}) or tools/test.py --out (ranked runs carry pred_scores)
    python tools/analysis_tools/eval_predictions.py --metric seed_bench \
        --pred answers.jsonl --ann seed_bench/SEED-Bench.json --out metrics.json
    # MVBench: the run's --out file (or JSON lines {"question_id": "<task>/<index>", "pred",
    # "pred_scores"?}); --ann the release root (json/<task>.json: every task file found is scored)
    python tools/analysis_tools/eval_predictions.py --metric mvbench --pred preds.json \
        --ann MVBench --out metrics.json
    # LLaVA-Bench (in-the-wild): the summary of a review file (llava_bench_review.py --out)
    python tools/analysis_tools/eval_predictions.py --metric llava_bench \
        --pred reviews.jsonl --ann llava-bench-in-the-wild

The formats are described in :mod:`mmllava.evaluation.offline`. The metric classes are the
ones ``tools/test.py`` uses.
"""
from mmllava.utils.cli import make_parser, run_cli

# mmllava.evaluation.offline.metric_names(), written out so that --help imports nothing
# heavy (tests/test_tools/test_startup.py checks that the two agree); another name is refused
# with the list.
METRICS = ('action', 'caption', 'gqa', 'llava_bench', 'mmbench', 'mme', 'multiple_choice',
           'mvbench', 'pope', 'seed_bench', 'vqa')


def parse_args(argv=None):
    parser = make_parser(description='Score a predictions file')
    parser.add_argument('--metric', required=True, metavar='NAME',
                        help=f'the benchmark\'s metric: {", ".join(METRICS)}')
    parser.add_argument('--pred', required=True, help='predictions: JSON lines or JSON list')
    parser.add_argument('--ann', required=True, action='append',
                        help='the official annotation file or release folder (repeat for POPE '
                        'splits)')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument('--prefix', help='metric key prefix (default: the metric\'s)')
    parser.add_argument('--label-map', help='action: the class names, one a line (default: '
                        'label_map.txt beside --ann)')
    parser.add_argument('--allow-missing', action='store_true',
                        help='score annotated questions without a prediction as wrong '
                        '(counted in num_missing) instead of stopping')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.evaluation.offline import evaluate_predictions, write_metrics_json
    # A malformed file or an unknown metric: a ValueError naming it, one line (run_cli).
    metrics = evaluate_predictions(args.metric, args.pred, args.ann,
                                   allow_missing=args.allow_missing, prefix=args.prefix,
                                   label_map=args.label_map)
    for key, value in metrics.items():
        print(f'{key}: {value:.4f}' if isinstance(value, float) else f'{key}: {value}')
    if args.out:
        write_metrics_json(metrics, args.out)
    return metrics


if __name__ == '__main__':
    run_cli(main)
