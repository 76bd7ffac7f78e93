"""Write the file MMBench's evaluation server takes (test split, or dev) from predictions.

Examples::

    # tools/test.py --out predictions of the test TSV -> the .xlsx LLaVA uploads (openpyxl)
    python tools/analysis_tools/mmbench_submission.py --pred preds.json \\
        --ann data/mmbench/mmbench_test_20230712.tsv --out submission/llava-v1.5-7b.xlsx
    # without openpyxl: a .tsv (or .csv), which the server takes too
    python tools/analysis_tools/mmbench_submission.py --pred answers.jsonl \\
        --ann mmbench_test_20230712.tsv --out llava-v1.5-7b.tsv

The TSV's rows with ``prediction`` (the raw generation), as LLaVA's
``scripts/convert_mmbench_for_submission.py`` writes them; see
:func:`mmllava.evaluation.metrics.mmbench.write_mmbench_submission`. Predictions: JSON lines of
``{"index", "prediction"}``, ``tools/test.py --out``, or LLaVA's answers file.
"""
from mmllava.utils.cli import make_parser, run_cli


def parse_args(argv=None):
    parser = make_parser(description='Write an MMBench submission file')
    parser.add_argument('--pred', required=True, help='predictions: JSON lines or JSON list')
    parser.add_argument('--ann', required=True, help='the MMBench TSV the predictions are of')
    parser.add_argument('--out', required=True,
                        help='the submission: .xlsx (needs openpyxl), .tsv or .csv')
    parser.add_argument('--allow-missing', action='store_true',
                        help='leave rows without a prediction empty instead of stopping')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmllava.evaluation.metrics.mmbench import write_mmbench_submission
    rows = write_mmbench_submission(args.pred, args.ann, args.out,
                                    allow_missing=args.allow_missing)
    print(f'{rows} rows written to {args.out}')


if __name__ == '__main__':
    run_cli(main)
