"""A judge behind any OpenAI-compatible chat endpoint, spoken to with the standard library.

The GPT-assisted reviews (LLaVA-Bench) send one chat request per answer to a judge model:
OpenAI's API, a local vLLM or llama.cpp server, or mmllava's own ``tools/serve.py``. Only
``POST {base_url}/chat/completions`` is used, with ``model``, ``messages``, ``temperature``
and ``max_tokens``; the answer is ``choices[0].message.content``. No ``openai`` package.
"""
import json
import os
import time
import urllib.error
import urllib.request
from typing import List, Optional

# Answers worth asking again: rate limits, overload, gateway troubles.
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)


class JudgeError(ConnectionError):
    """The judge could not be asked, or answered something that is not a chat completion."""


def chat_completions_url(url: str) -> str:
    """``{url}/chat/completions`` for a base URL (``http://host:8000/v1``); a URL that already
    ends in ``/chat/completions`` is kept."""
    url = url.rstrip('/')
    if not url.startswith(('http://', 'https://')):
        raise ValueError(f'judge URL must start with http:// or https://, got {url!r}')
    return url if url.endswith('/chat/completions') else url + '/chat/completions'


class OpenAIJudge:
    """Ask a chat model behind an OpenAI-compatible endpoint.

    Args:
        url (str): The API base (``http://127.0.0.1:8000/v1``) or the full
            ``.../chat/completions`` URL.
        model (str): The ``model`` of the requests (the name the server serves).
        api_key (str, optional): Sent as ``Authorization: Bearer``; default the environment's
            ``OPENAI_API_KEY`` (none: no header, as local servers want).
        timeout (float): Seconds one request may take.
        retries (int): Attempts after the first for a failed connection, a timeout or a
            retryable status (429, 5xx ...); another 4xx (a wrong model name, a bad key) is
            raised at once.
        retry_wait (float): Seconds before the first retry, doubled at each (at most 30).
    """

    def __init__(self, url: str, model: str, api_key: Optional[str] = None,
                 timeout: float = 120.0, retries: int = 5, retry_wait: float = 0.5):
        self.url = chat_completions_url(url)
        self.model = model
        self.api_key = api_key if api_key is not None else os.environ.get('OPENAI_API_KEY')
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait

    def _post(self, body: dict) -> dict:
        headers = {'Content-Type': 'application/json'}
        if self.api_key:
            headers['Authorization'] = f'Bearer {self.api_key}'
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=headers, method='POST')
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read().decode('utf-8'))

    @staticmethod
    def _error_text(error: urllib.error.HTTPError) -> str:
        try:
            body = json.loads(error.read().decode('utf-8', 'replace'))
            return str(body.get('error', {}).get('message') or body)[:300]
        except Exception:  # noqa: BLE001 - a body that is not JSON: the status says enough
            return error.reason or ''

    def chat(self, messages: List[dict], temperature: float = 0.2,
             max_tokens: int = 1024) -> str:
        """The judge's answer text to ``messages``.

        Raises:
            JudgeError: A 4xx answer other than a retryable one, every attempt failed, or the
                answer is not a chat completion (the message names the URL and the cause).
        """
        body = dict(model=self.model, messages=messages, temperature=temperature,
                    max_tokens=max_tokens)
        wait, last = self.retry_wait, None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(wait)
                wait = min(2 * wait, 30.0)
            try:
                answer = self._post(body)
            except urllib.error.HTTPError as e:
                last = f'HTTP {e.code}: {self._error_text(e)}'
                if e.code not in RETRY_STATUS:
                    raise JudgeError(f'judge {self.url} (model {self.model!r}) refused the '
                                     f'request: {last}') from None
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
                last = f'{type(e).__name__}: {getattr(e, "reason", e)}'
                continue
            except ValueError as e:  # not JSON
                last = f'an answer that is not JSON ({e})'
                continue
            try:
                content = answer['choices'][0]['message']['content']
            except (KeyError, IndexError, TypeError):
                raise JudgeError(f'judge {self.url}: the answer is not a chat completion: '
                                 f'{answer!r:.200}') from None
            return content if content is not None else ''
        tries = self.retries + 1
        raise JudgeError(f'judge {self.url} (model {self.model!r}): no answer after {tries} '
                         f'attempt{"s" if tries > 1 else ""}; last: {last}')
