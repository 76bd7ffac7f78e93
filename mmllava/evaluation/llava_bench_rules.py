"""The review rules of LLaVA-Bench (in-the-wild), as data.

Copied from ``llava/eval/table/rule.json`` of haotian-liu/LLaVA (commit 181a2f8), the file
``scripts/v1_5/eval/llavabench.sh`` passes to ``eval_gpt_review_bench.py --rule``: the keys
``llava_bench_conv``, ``llava_bench_detail`` and ``llava_bench_complex`` (one ``role`` and one
``prompt`` each; the three prompts are the same text). The other keys of that file (coding,
math, default, and the COCO ``conv``/``detail``/``complex`` rules with bounding boxes) are
not used by LLaVA-Bench. A rule file of that format can be given instead
(:func:`mmllava.evaluation.metrics.llava_bench.load_rules`).

Kept in a module rather than a ``.json`` so that it is installed with the package.
"""

SOURCE = ('haotian-liu/LLaVA llava/eval/table/rule.json '
          '(commit 181a2f811f1eb0b794c25e87204491d812c05f8d)')

_PROMPT = (
    'We would like to request your feedback on the performance of two AI assistants '
    'in response to the user question displayed above. The user asks the question on '
    'observing an image. For your reference, the visual content in the image is '
    'represented with a few sentences describing the image. \n'
    'Please rate the helpfulness, relevance, accuracy, level of details of their '
    'responses. Each assistant receives an overall score on a scale of 1 to 10, where'
    ' a higher score indicates better overall performance.\n'
    'Please first output a single line containing only two values indicating the '
    'scores for Assistant 1 and 2, respectively. The two scores are separated by a '
    'space.\n'
    'In the subsequent line, please provide a comprehensive explanation of your '
    'evaluation, avoiding any potential bias and ensuring that the order in which the'
    ' responses were presented does not affect your judgment.')

RULES = {
    f'llava_bench_{category}': dict(role='Assistant', prompt=_PROMPT)
    for category in ('conv', 'detail', 'complex')
}
