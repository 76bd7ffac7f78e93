"""Review LLaVA-Bench (in-the-wild) answers with a judge behind an OpenAI-compatible endpoint.

The port of LLaVA's ``eval_gpt_review_bench.py`` + ``summarize_gpt_review.py``
(:mod:`mmllava.evaluation.metrics.llava_bench`): one review per question, written to
``--out`` as the original's review file, then the summary (relative score per category and
overall, the number LLaVA reports). A cut-short review goes on where it stopped (the reviews
already in ``--out`` are kept; ``--restart`` starts afresh).

Examples::

    # answers: LLaVA's model_vqa.py JSON lines, or tools/test.py --out
    python tools/analysis_tools/llava_bench_review.py --pred answers.jsonl \\
        --ann data/llava-bench-in-the-wild --judge-url https://api.openai.com/v1 \\
        --judge-model gpt-4-0314 --out reviews.jsonl          # key: $OPENAI_API_KEY
    # a local judge: any OpenAI-compatible server, tools/serve.py included
    python tools/analysis_tools/llava_bench_review.py --pred answers.jsonl \\
        --ann data/llava-bench-in-the-wild --judge-url http://127.0.0.1:8000/v1 \\
        --judge-model NAME --out reviews.jsonl
    # the summary of a review file again
    python tools/analysis_tools/eval_predictions.py --metric llava_bench \\
        --pred reviews.jsonl --ann data/llava-bench-in-the-wild
"""
from mmllava.utils.cli import make_parser, run_cli


def parse_args(argv=None):
    parser = make_parser(description='Review LLaVA-Bench answers with an LLM judge')
    parser.add_argument('--pred', required=True,
                        help='the answers: JSON lines {"question_id", "text", "answer_id"} '
                        '(LLaVA\'s model_vqa.py) or a tools/test.py --out JSON list')
    parser.add_argument('--ann', required=True,
                        help='the release folder (questions.jsonl, context.jsonl, '
                        'answers_gpt4.jsonl)')
    parser.add_argument('--judge-url', required=True,
                        help='the judge\'s OpenAI-compatible API base, e.g. '
                        'http://127.0.0.1:8000/v1')
    parser.add_argument('--judge-model', required=True, help='the judge\'s model name')
    parser.add_argument('--api-key', help='the judge\'s key (default: $OPENAI_API_KEY)')
    parser.add_argument('--out', required=True, help='the review file (JSON lines)')
    parser.add_argument('--rules', help='a rule file in LLaVA\'s llava/eval/table/rule.json '
                        'format (default: LLaVA\'s rules)')
    parser.add_argument('--temperature', type=float, default=0.2,
                        help='the judge\'s temperature (the original\'s: 0.2)')
    parser.add_argument('--max-tokens', type=int, default=1024,
                        help='the judge\'s answer length (the original\'s: 1024)')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds one judge request may take')
    parser.add_argument('--retries', type=int, default=5,
                        help='retries of a failed judge request (429, 5xx, no connection)')
    parser.add_argument('--allow-missing', action='store_true',
                        help='leave questions without an answer unreviewed instead of stopping')
    parser.add_argument('--restart', action='store_true',
                        help='review every question again (default: keep the reviews --out '
                        'has)')
    parser.add_argument('--metrics-out', help='also write the summary to this JSON file')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.datasets.llava_bench import read_llava_bench
    from mmllava.evaluation.judge import OpenAIJudge
    from mmllava.evaluation.metrics.llava_bench import (
        load_rules,
        read_answers,
        review_answers,
        score_prediction_file,
    )
    from mmllava.evaluation.offline import write_metrics_json
    bench = read_llava_bench(args.ann)
    judge = OpenAIJudge(args.judge_url, args.judge_model, args.api_key, timeout=args.timeout,
                        retries=args.retries)
    review_answers(bench, read_answers(args.pred), judge, args.out, load_rules(args.rules),
                   temperature=args.temperature, max_tokens=args.max_tokens,
                   allow_missing=args.allow_missing, resume=not args.restart,
                   progress=not args.no_progress)
    metrics = score_prediction_file(args.out, [args.ann], allow_missing=args.allow_missing)
    for key, value in metrics.items():
        print(f'{key}: {value}')
    if args.metrics_out:
        write_metrics_json(metrics, args.metrics_out)
    return metrics


if __name__ == '__main__':
    run_cli(main)
