"""LLaVA-Bench's review and summary: LLaVA's eval_gpt_review_bench.py + summarize_gpt_review.py.

The expected numbers are worked out by hand from the rules of the original scripts; the
review request is compared with a golden string; the whole review runs against our own
tools/serve.py on the tiny model (whatever it answers, the parsing and arithmetic hold).
"""
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmllava.datasets.annotations import AnnotationError
from mmllava.evaluation.judge import JudgeError, OpenAIJudge, chat_completions_url
from mmllava.evaluation.metrics.llava_bench import (
    SYSTEM_MESSAGE,
    load_rules,
    parse_score,
    read_answers,
    review_answers,
    review_content,
    score_prediction_file,
    summarize_reviews,
)
from mmllava.evaluation.offline import evaluate_predictions

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / 'tests' / 'data' / 'llava_bench'
# llava/eval/table/rule.json's llava_bench_{conv,detail,complex} prompt, typed out again.
RULE_PROMPT = (
    'We would like to request your feedback on the performance of two AI assistants in '
    'response to the user question displayed above. The user asks the question on observing '
    'an image. For your reference, the visual content in the image is represented with a few '
    'sentences describing the image. \nPlease rate the helpfulness, relevance, accuracy, '
    'level of details of their responses. Each assistant receives an overall score on a '
    'scale of 1 to 10, where a higher score indicates better overall performance.\nPlease '
    'first output a single line containing only two values indicating the scores for '
    'Assistant 1 and 2, respectively. The two scores are separated by a space.\nIn the '
    'subsequent line, please provide a comprehensive explanation of your evaluation, '
    'avoiding any potential bias and ensuring that the order in which the responses were '
    'presented does not affect your judgment.')


def make_bench(tmp_path) -> Path:
    """The fixture release folder with its two images."""
    bench = tmp_path / 'bench'
    shutil.copytree(DATA, bench)
    (bench / 'images').mkdir()
    for name in ('001.jpg', '002.jpg'):
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(bench / 'images' / name)
    return bench


def write_lines(path, rows):
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


@pytest.mark.parametrize('review,scores', [
    ('8 7\nAssistant 1 is better.', [8.0, 7.0]),
    ('8 7.5', [8.0, 7.5]),
    ('9,6\nok', [9.0, 6.0]),          # a comma becomes a space
    ('8, 7\nok', [-1, -1]),           # ... so "8, 7" has three parts
    ('Scores: 8 7', [-1, -1]),        # extra text on the line
    ('8 7 \nok', [-1, -1]),           # a trailing space is a third part
    ('The first answer is better.', [-1, -1]),
    ('eight seven', [-1, -1]),        # two parts, not numbers
    ('', [-1, -1]),
    (None, [-1, -1]),                 # a judge answer without content
])
def test_parse_score_as_the_original(review, scores):
    assert parse_score(review) == scores


def test_summary_arithmetic_by_hand():
    reviews = [dict(category='llava_bench_conv', tuple=[8, 6]),
               dict(category='llava_bench_conv', tuple=[9, 9]),
               dict(category='llava_bench_detail', tuple=[10, 5]),
               dict(category='llava_bench_complex', tuple=[7, 7]),
               dict(category='llava_bench_complex', tuple=[-1, -1])]  # unparsed: counted in
    m = summarize_reviews(reviews)
    # all: reference (8+9+10+7-1)/5 = 6.6, model (6+9+5+7-1)/5 = 5.2: 5.2/6.6 = 78.79 %
    assert (m['all'], m['all/gpt4_score'], m['all/model_score']) == (78.8, 66.0, 52.0)
    # conv: 7.5/8.5 = 88.24 %; detail: 5/10; complex: (7-1)/2 over (7-1)/2
    assert (m['conv'], m['conv/gpt4_score'], m['conv/model_score']) == (88.2, 85.0, 75.0)
    assert (m['detail'], m['detail/gpt4_score'], m['detail/model_score']) == (50.0, 100.0, 50.0)
    assert (m['complex'], m['complex/gpt4_score'], m['complex/model_score']) == (100.0, 30.0,
                                                                                 30.0)
    assert (m['num_reviews'], m['num_unparsed']) == (5, 1)
    # Means rounded to 3 decimals first: 2/3 -> 0.667 and 1/3 -> 0.333, 0.333/0.667 = 49.93 %
    # (the unrounded ratio would be 50.0).
    thirds = summarize_reviews([dict(tuple=[1, 1]), dict(tuple=[1, 0]), dict(tuple=[0, 0])])
    assert thirds['all'] == 49.9 and 'conv' not in thirds
    # Rounded as Python floats, as the original (.tolist()): 60 reviews of reference 6 and
    # model scores summing to 182: 3.033 / 6 * 100 = 50.55 -> 50.5 (numpy's round: 50.6).
    ties = [dict(tuple=[6, 4])] * 2 + [dict(tuple=[6, 3])] * 58
    assert sum(r['tuple'][1] for r in ties) == 182
    assert summarize_reviews(ties)['all'] == 50.5


def test_review_content_is_the_originals():
    rule = load_rules()['llava_bench_complex']
    assert rule == dict(role='Assistant', prompt=RULE_PROMPT)
    assert {k: r['prompt'] for k, r in load_rules().items()} == {
        f'llava_bench_{c}': RULE_PROMPT for c in ('conv', 'detail', 'complex')}
    content = review_content('A cat sits on a red box.\nThe box is in a kitchen.',
                             'Why is the cat on the box?', 'It is warm.', 'It likes boxes.',
                             rule)
    assert content == (
        '[Context]\nA cat sits on a red box.\nThe box is in a kitchen.\n\n'
        '[Question]\nWhy is the cat on the box?\n\n'
        '[Assistant 1]\nIt is warm.\n\n[End of Assistant 1]\n\n'
        '[Assistant 2]\nIt likes boxes.\n\n[End of Assistant 2]\n\n'
        f'[System]\n{RULE_PROMPT}\n\n')


class RecordingJudge:
    """A judge that answers from a list and keeps what it was asked."""
    model = 'recording'

    def __init__(self, answers):
        self.answers, self.asked = list(answers), []

    def chat(self, messages, temperature, max_tokens):
        self.asked.append(dict(messages=messages, temperature=temperature,
                               max_tokens=max_tokens))
        return self.answers.pop(0)


def test_review_file_resume_and_offline_summary(tmp_path):
    from mmllava.datasets.llava_bench import read_llava_bench
    bench_dir = make_bench(tmp_path)
    bench = read_llava_bench(str(bench_dir))
    assert bench['2']['caption'] == 'A cat sits on a red box.\nThe box is in a kitchen.'
    answers = write_lines(tmp_path / 'answers.jsonl', [
        dict(question_id=q, prompt='p', text=t, answer_id=f'a{q}', model_id='m')
        for q, t in ((0, 'Diamond Head'), (1, 'A hill.'), (2, 'It likes boxes.'))])
    out = tmp_path / 'reviews.jsonl'
    judge = RecordingJudge(['8 6\nfine', '10 5\nshort', '9 9\nreplaced below'])
    with pytest.raises(AnnotationError, match='2 of 3 questions have no answer'):
        review_answers(bench, {'0': read_answers(str(answers))['0']}, judge, str(out))
    review_answers(bench, read_answers(str(answers)), judge, str(out), progress=False)
    asked = judge.asked[0]
    assert (asked['temperature'], asked['max_tokens']) == (0.2, 1024)
    assert asked['messages'][0] == dict(role='system', content=SYSTEM_MESSAGE)
    assert asked['messages'][1]['content'].startswith(
        '[Context]\nAn aerial view of Diamond Head.\n\n[Question]\nWhat is the name of this '
        'famous sight?\n\n[Assistant 1]\nDiamond Head.\n\n')
    judge.answers = ['I cannot say.']  # a review cut short, then resumed: only q2 is asked
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + '\n' + lines[1] + '\n')
    reviews = review_answers(bench, read_answers(str(answers)), judge, str(out),
                             progress=False)
    assert len(judge.asked) == 4 and judge.answers == []
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r['id'] for r in rows] == [1, 2, 3] and rows == reviews
    assert rows[2] == dict(id=3, question_id=2, answer1_id='ref2', answer2_id='a2',
                           category='llava_bench_complex', content='I cannot say.',
                           tuple=[-1, -1], judge_model='recording')
    # all: reference (8+10-1)/3 = 5.667, model (6+5-1)/3 = 3.333: 58.8 %.
    m = evaluate_predictions('llava_bench', str(out), [str(bench_dir)])
    assert m == {
        'llava_bench/all': 58.8, 'llava_bench/all/gpt4_score': 56.7,
        'llava_bench/all/model_score': 33.3,
        'llava_bench/conv': 75.0, 'llava_bench/conv/gpt4_score': 80.0,
        'llava_bench/conv/model_score': 60.0,
        'llava_bench/detail': 50.0, 'llava_bench/detail/gpt4_score': 100.0,
        'llava_bench/detail/model_score': 50.0,
        'llava_bench/complex': 100.0, 'llava_bench/complex/gpt4_score': -10.0,
        'llava_bench/complex/model_score': -10.0,
        'llava_bench/num_reviews': 3, 'llava_bench/num_unparsed': 1,
        'llava_bench/num_missing': 0}
    # A missing review raises, or is left out and counted.
    out.write_text(lines[0] + '\n')
    with pytest.raises(AnnotationError, match='2 of 3 questions have no review'):
        score_prediction_file(str(out), [str(bench_dir / 'questions.jsonl')])
    m = score_prediction_file(str(out), [str(bench_dir)], allow_missing=True, prefix='w')
    assert (m['w/all'], m['w/num_missing'], m['w/num_reviews']) == (75.0, 2, 1)
    # An answers file given as reviews says what to do.
    with pytest.raises(AnnotationError, match='an answer, not a review'):
        score_prediction_file(str(answers), [str(bench_dir)])


def test_bad_files_raise_one_line(tmp_path):
    from mmllava.datasets.llava_bench import read_llava_bench
    bench = make_bench(tmp_path)
    (bench / 'context.jsonl').write_text('{"image": "001.jpg", "caption": "x"}\n')
    with pytest.raises(AnnotationError, match=r"context.jsonl: no caption for image '002.jpg'"):
        read_llava_bench(str(bench))
    shutil.copy(DATA / 'context.jsonl', bench / 'context.jsonl')
    write_lines(bench / 'questions.jsonl', [dict(question_id=0, image='001.jpg', text='q',
                                                 category='ocr')])
    with pytest.raises(AnnotationError, match="category.*got 'ocr'"):
        read_llava_bench(str(bench))
    shutil.copy(DATA / 'questions.jsonl', bench / 'questions.jsonl')
    reviews = write_lines(tmp_path / 'r.jsonl', [dict(question_id=0, tuple=[8])])
    with pytest.raises(AnnotationError, match='review #1 needs "question_id" and "tuple"'):
        score_prediction_file(str(reviews), [str(bench)])
    write_lines(reviews, [dict(question_id=0, category='llava_bench_detail', tuple=[8, 7])])
    with pytest.raises(AnnotationError, match="reviewed as 'llava_bench_detail'"):
        score_prediction_file(str(reviews), [str(bench)], allow_missing=True)
    write_lines(reviews, [dict(question_id=7, tuple=[8, 7])])
    with pytest.raises(AnnotationError, match='does not have'):
        score_prediction_file(str(reviews), [str(bench)], allow_missing=True)


class _Stub(BaseHTTPRequestHandler):
    """An endpoint answering from ``server.plan`` (status, body) and keeping the requests."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        self.server.seen.append((self.path, self.headers.get('Authorization'), body))
        status, answer = self.server.plan.pop(0)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_judge_client_request_retries_and_errors():
    assert chat_completions_url('http://h:1/v1/') == 'http://h:1/v1/chat/completions'
    assert chat_completions_url('http://h/v1/chat/completions') == 'http://h/v1/chat/completions'
    with pytest.raises(ValueError, match='http'):
        chat_completions_url('h:1/v1')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Stub)
    srv.seen, srv.plan = [], []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{srv.server_address[1]}/v1'
    try:
        ok = dict(choices=[dict(message=dict(role='assistant', content='7 8\nwhy'))])
        srv.plan = [(429, dict(error=dict(message='slow down'))), (200, ok)]
        judge = OpenAIJudge(url, 'judge', api_key='k', retries=2, retry_wait=0.01)
        assert judge.chat([dict(role='user', content='hi')], 0.2, 16) == '7 8\nwhy'
        path, auth, body = srv.seen[-1]
        assert (path, auth, len(srv.seen)) == ('/v1/chat/completions', 'Bearer k', 2)
        assert body == dict(model='judge', messages=[dict(role='user', content='hi')],
                            temperature=0.2, max_tokens=16)
        srv.plan = [(404, dict(error=dict(message="The model 'judge' does not exist")))]
        with pytest.raises(JudgeError, match="refused the request: HTTP 404: The model"):
            judge.chat([], 0.2, 16)
        assert len(srv.seen) == 3  # a 404 is not asked again
        srv.plan = [(503, {}), (503, {}), (503, {})]
        with pytest.raises(JudgeError, match='no answer after 3 attempts; last: HTTP 503'):
            judge.chat([], 0.2, 16)
        srv.plan = [(200, dict(answer='?'))]
        with pytest.raises(JudgeError, match='not a chat completion'):
            judge.chat([], 0.2, 16)
    finally:
        srv.shutdown()
        srv.server_close()


def test_whole_review_against_our_server(tmp_path):
    """tools/serve.py on the tiny model as the judge; the tool reviews, parses, summarizes."""
    import torch
    from fixtures_llava import load_script, serving_in_thread

    from mmllava.apis import get_model
    bench = make_bench(tmp_path)
    answers = write_lines(tmp_path / 'answers.jsonl', [
        dict(question_id=q, prompt='p', text='A hill.', answer_id=f'a{q}', model_id='m')
        for q in range(3)])
    torch.manual_seed(0)
    # LLaVA's rule alone is ~400 of the tiny tokenizer's tokens: a longer context (rotary
    # positions, nothing learned) holds the original request unshortened.
    model = get_model(str(ROOT / 'configs/llava/llava-tiny_vqa.py'),
                      llm=dict(config=dict(max_position_embeddings=1024)))
    assert model.max_length >= 1024
    serve = load_script('tools/serve.py')
    tool = load_script('tools/analysis_tools/llava_bench_review.py')
    out = tmp_path / 'reviews.jsonl'
    srv = serve.build_server(model, 'tiny-judge', port=0, log_level='warning')
    with serving_in_thread(srv):
        argv = ['--pred', answers, '--ann', bench, '--judge-url', srv.url,
                '--judge-model', 'tiny-judge', '--out', out, '--max-tokens', '4',
                '--temperature', '0', '--no-progress']
        metrics = tool.main([str(a) for a in argv])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r['question_id'] for r in rows] == [0, 1, 2]
    for row in rows:  # whatever the tiny model said, the tuple is parse_score's reading of it
        assert isinstance(row['content'], str) and row['tuple'] == parse_score(row['content'])
    scores = np.array([r['tuple'] for r in rows], dtype=float)
    ref, mod = (round(float(x), 3) for x in scores.mean(0))
    assert metrics['llava_bench/all/gpt4_score'] == round(ref * 10, 1)
    assert metrics['llava_bench/all/model_score'] == round(mod * 10, 1)
    if ref:
        assert metrics['llava_bench/all'] == round(mod / ref * 100, 1)
    assert metrics['llava_bench/num_unparsed'] == sum(list(t) == [-1, -1] for t in scores)
    assert metrics['llava_bench/num_reviews'] == 3
    # Everything reviewed: a second run asks nothing (the judge is gone) and sums the same.
    argv[argv.index('--judge-url') + 1] = 'http://127.0.0.1:9/v1'
    again = tool.main([str(a) for a in argv])
    assert json.dumps(again, sort_keys=True) == json.dumps(metrics, sort_keys=True)


def test_answers_from_a_test_tool_out_file(tmp_path):
    """tools/test.py --out (a JSON list; an unreadable image's row is an empty answer)."""
    out = tmp_path / 'preds.json'
    out.write_text(json.dumps([dict(question_id=0, sample_id=0, text='A hill.', prompt=None),
                               dict(question_id=2, sample_id=2, text=None, prompt=None,
                                    invalid_sample='image file not found')]))
    assert read_answers(str(out)) == {'0': dict(text='A hill.', answer_id=0),
                                      '2': dict(text='', answer_id=2)}
    write_lines(out, [dict(question_id=0, text='a'), dict(question_id=0, text='b')])
    with pytest.raises(AnnotationError, match='question 0 is answered twice'):
        read_answers(str(out))


def test_metric_without_a_judge_writes_llavas_answers_file(tmp_path):
    from mmllava.evaluation.metrics import LLaVABenchMetric
    bench = make_bench(tmp_path)
    answers = tmp_path / 'run' / 'answers.jsonl'
    metric = LLaVABenchMetric(bench_dir=str(bench), answers_file=str(answers), model_id='tiny')
    metric.process(None, [
        dict(question_id=0, pred_answer=' Diamond Head ', gt_answer='Diamond Head.',
             category='conv', question='What is the name of this famous sight?'),
        dict(question_id=2, pred_answer='', gt_answer='It is warm.', category='complex',
             question='Why is the cat on the box?', invalid_sample='image file not found')])
    assert metric.compute_metrics(metric.results) == dict(num_samples=2, num_empty=0,
                                                          num_invalid=1)
    rows = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [(r['question_id'], r['prompt'], r['text'], r['model_id']) for r in rows] == [
        (0, 'What is the name of this famous sight?', 'Diamond Head', 'tiny'),
        (2, 'Why is the cat on the box?', '', 'tiny')]
    assert len({r['answer_id'] for r in rows}) == 2 and rows[0]['metadata'] == {}
    assert metric.reviews_file == str(tmp_path / 'run' / 'answers_reviews.jsonl')
