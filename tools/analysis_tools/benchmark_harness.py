"""How ``benchmark.py`` measures: worker subprocesses, timed runs, RSS and CPU accounting.

Each framework (or ``--quant`` variant) runs in its own worker subprocess, a copy of
``benchmark.py`` started with ``--worker``, so its imports, allocator state and RSS high-water
mark are its own. The parent (:func:`_measure`) drives the workers in turn, line by line over
their stdin and stdout, after one warm-up each. As the benchmark runs on shared machines, every
run also records the share of the CPU that other processes took while it ran; the parent waits
for a quiet machine before a run and redoes a run that was disturbed.

Keep this module free of mmllava imports at the top: the transformers worker imports it and
must not pay for them (imports show in its RSS).
"""
import json
import os
import statistics
import subprocess
import sys
import time

from benchmark_specs import (
    BATCH,
    BATCH_TOKENS,
    DECODE_TOKENS,
    EOS,
    FRAMEWORKS,
    PAD,
    TRAIN_BATCH,
    TRAIN_STEPS,
    _generator,
    _trainer,
    llm_bytes_per_token,
    load_model,
    make_inputs,
    make_train_inputs,
    make_weights,
)

# The workers run the entry point, which parses ``--worker`` and calls :func:`worker`.
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'benchmark.py')


def log(msg: str) -> None:
    """Print a progress line to stderr, since stdout carries the table (and a worker's protocol).

    Args:
        msg: The line, without the timestamped prefix.
    """
    print(f'[benchmark {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- process accounting
def _rss_kib(field: str) -> int:
    """Read a memory field of this process (``VmRSS``, ``VmHWM``) from ``/proc/self/status``.

    Args:
        field: The field's name.

    Returns:
        int: Its value in KiB.
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _reset_peak_rss() -> None:
    """Reset this process's ``VmHWM`` to its current RSS, so a run's peak is its own.

    Writing 5 to ``/proc/self/clear_refs`` does it (Linux >= 4.0).
    """
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def _cpu_jiffies() -> tuple:
    """Read the whole machine's CPU time from ``/proc/stat``.

    Returns:
        tuple: ``(busy, total)`` jiffies since boot; steal counts as busy (someone else ran).
    """
    with open('/proc/stat') as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def foreign_cpu_share(seconds: float, own_pids=()) -> float:
    """Measure the share of the machine's CPU that other processes use over a window.

    Args:
        seconds: How long to watch (this call sleeps that long).
        own_pids: Processes not counted as others (the workers); this process never is.

    Returns:
        float: Their CPU time over the machine's, in [0, 1].
    """
    def own_ticks():
        ticks = 0
        for pid in own_pids:
            try:
                with open(f'/proc/{pid}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return ticks

    busy0, total0 = _cpu_jiffies()
    own0 = own_ticks() + sum(os.times()[:2]) * os.sysconf('SC_CLK_TCK')
    time.sleep(seconds)
    busy1, total1 = _cpu_jiffies()
    own1 = own_ticks() + sum(os.times()[:2]) * os.sysconf('SC_CLK_TCK')
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / max(total1 - total0, 1)


# ---------------------------------------------------------------------- timed runs
class _Stamp:
    """A no-op logits processor that records when each step's logits are ready."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def _run(generate, inputs: dict, warmup: bool) -> dict:
    """Time one inference measurement: the single prompt's generation, then the batch's.

    Args:
        generate: A ``generate`` of :func:`benchmark_specs._generator`.
        inputs: The inputs of :func:`benchmark_specs.make_inputs`.
        warmup: Generate a few tokens only: the same shapes and kernels at a fraction of the
            time.

    Returns:
        dict: ``prefill_latency`` (ms), ``decode_throughput``, ``batch8_throughput``,
        ``peak_memory_kib``, the generated ``single_ids`` and ``batch_ids`` (to compare the
        frameworks' outputs), ``seconds`` and ``foreign_cpu`` (others' share of the CPU).
    """
    import torch
    from transformers import LogitsProcessorList

    # A shorter warm-up exercises the same shapes and kernels at a fraction of the time.
    n_single, n_batch = (4, 2) if warmup else (DECODE_TOKENS, BATCH_TOKENS)
    common = dict(do_sample=False, num_beams=1, eos_token_id=EOS, pad_token_id=PAD)
    stamp = _Stamp()
    _reset_peak_rss()
    busy0, total0 = _cpu_jiffies()
    own0 = os.times()
    with torch.inference_mode():
        t0 = time.perf_counter()
        single = generate(inputs['single'], inputs['single_mask'], inputs['single_px'],
                          min_new_tokens=n_single, max_new_tokens=n_single,
                          logits_processor=LogitsProcessorList([stamp]), **common)
        t1 = time.perf_counter()
        batch = generate(inputs['batch'], inputs['batch_mask'], inputs['batch_px'],
                         min_new_tokens=n_batch, max_new_tokens=n_batch, **common)
        t2 = time.perf_counter()
    busy1, total1 = _cpu_jiffies()
    own1 = os.times()
    own = (own1.user + own1.system) - (own0.user + own0.system)
    # Share of the machine's CPU time others used while we ran: a shared machine's noise.
    hz = os.sysconf('SC_CLK_TCK')
    foreign = max(0.0, (busy1 - busy0) / hz - own) / max((total1 - total0) / hz, 1e-9)
    assert single.shape == (1, n_single) and batch.shape == (BATCH, n_batch), \
        (single.shape, batch.shape)
    assert len(stamp.times) == n_single
    return dict(
        prefill_latency=(stamp.times[0] - t0) * 1e3,
        decode_throughput=(n_single - 1) / (stamp.times[-1] - stamp.times[0]),
        batch8_throughput=BATCH / (t2 - t1),
        peak_memory_kib=_rss_kib('VmHWM'),
        single_ids=single.tolist(), batch_ids=batch.tolist(),
        seconds=t2 - t0, foreign_cpu=foreign)


def _train_run(step, inputs: dict, warmup: bool) -> dict:
    """Time one training measurement: ``TRAIN_STEPS`` steps (one for a warm-up).

    Args:
        step: A ``step`` of :func:`benchmark_specs._trainer`.
        inputs: The batch of :func:`benchmark_specs.make_train_inputs`.
        warmup: Take one step only.

    Returns:
        dict: ``train_throughput``, ``train_peak_memory_kib``, every step's ``losses`` (to
        compare the frameworks), ``seconds`` and ``foreign_cpu`` (others' share of the CPU).
    """
    steps = 1 if warmup else TRAIN_STEPS
    _reset_peak_rss()
    busy0, total0 = _cpu_jiffies()
    own0 = os.times()
    t0 = time.perf_counter()
    losses = [step(inputs) for _ in range(steps)]
    elapsed = time.perf_counter() - t0
    busy1, total1 = _cpu_jiffies()
    own1 = os.times()
    own = (own1.user + own1.system) - (own0.user + own0.system)
    hz = os.sysconf('SC_CLK_TCK')
    foreign = max(0.0, (busy1 - busy0) / hz - own) / max((total1 - total0) / hz, 1e-9)
    return dict(train_throughput=TRAIN_BATCH * steps / elapsed,
                train_peak_memory_kib=_rss_kib('VmHWM'), losses=losses, seconds=elapsed,
                foreign_cpu=foreign)


# ---------------------------------------------------------------------- worker
def worker(framework: str, size: str, weights: str, threads: int, train: bool = False,
           variant: str = None) -> None:
    """Serve as a worker: load a model, then answer ``run``/``warmup`` lines on stdin.

    This is what ``benchmark.py --worker`` runs, in a process of its own. It writes one JSON
    line once loaded (``ready``, ``load_s``, ``rss_loaded_kib``, ``threads``) and one per
    command (a result of :func:`_run` or :func:`_train_run`, plus ``rss_loaded_kib`` and, for a
    ``--quant`` variant, ``model_bytes``); ``quit`` or the end of stdin stops it.

    Args:
        framework: One of ``FRAMEWORKS``.
        size: A key of ``SIZES``.
        weights: The safetensors file of :func:`benchmark_specs.make_weights`.
        threads: torch threads.
        train: Time training steps instead of generation.
        variant: For mmllava under ``--quant``, one of ``QUANT_VARIANTS``.
    """
    # The protocol owns the real stdout; anything else printed goes to stderr.
    proto = os.fdopen(os.dup(1), 'w', buffering=1)
    sys.stdout = sys.stderr
    t = time.perf_counter()
    import gc

    import torch
    torch.set_num_threads(threads)
    model = load_model(framework, size, weights, variant)
    bytes_per_token = llm_bytes_per_token(framework, model)
    model_bytes = None
    if variant is not None:
        from mmllava.models.quantize import module_bytes
        model_bytes = module_bytes(model)
    if train:
        inputs = make_train_inputs(size)
        step = _trainer(framework, model, size)
    else:
        inputs = make_inputs(size)
        generate = _generator(framework, model, size)
    gc.collect()
    rss_loaded = _rss_kib('VmRSS')
    proto.write(json.dumps(dict(ready=True, load_s=time.perf_counter() - t,
                                rss_loaded_kib=rss_loaded,
                                threads=torch.get_num_threads())) + '\n')
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'quit':
            break
        if train:
            result = _train_run(step, inputs, warmup=(cmd == 'warmup'))
        else:
            result = _run(generate, inputs, warmup=(cmd == 'warmup'))
        result['rss_loaded_kib'] = rss_loaded
        result['bytes_per_token'] = bytes_per_token
        if model_bytes is not None:
            result['model_bytes'] = model_bytes
        proto.write(json.dumps(result) + '\n')


def read_bandwidth(threads: int, mib: int = 512, repeats: int = 5) -> float:
    """Memory read bandwidth (bytes/s) with ``threads`` torch threads: the median time of
    summing a ``mib`` MiB fp32 tensor, far larger than any cache (a sum reads each byte once
    and is memory bound)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data = torch.ones(mib * 2**18)
        data.sum()  # first touch
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            data.sum()
            times.append(time.perf_counter() - t)
        return data.numel() * 4 / statistics.median(times)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- driver
class Worker:
    """A worker subprocess (:func:`worker`) driven line by line.

    Args:
        framework: One of ``FRAMEWORKS``.
        size: A key of ``SIZES``.
        weights: The safetensors file the worker loads.
        threads: torch, OpenMP and MKL threads of the worker.
        train: Time training steps instead of generation.
        variant: For mmllava under ``--quant``, one of ``QUANT_VARIANTS``.
    """

    def __init__(self, framework: str, size: str, weights: str, threads: int,
                 train: bool = False, variant: str = None):
        self.framework = framework if variant is None else f'{framework} {variant}'
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TRANSFORMERS_VERBOSITY='error', TOKENIZERS_PARALLELISM='false')
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, '--worker', framework, '--size', size,
             '--weights', weights, '--threads', str(threads)] + (['--train'] if train else [])
            + (['--variant', variant] if variant else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def read(self) -> dict:
        """Read the worker's next JSON line; raise ``RuntimeError`` if it died instead."""
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'The {self.framework} worker died (exit code '
                               f'{self.proc.wait()}); see its stderr above')
        return json.loads(line)

    def ask(self, cmd: str) -> dict:
        """Send a command (``run``, ``warmup``) and return the worker's answer."""
        self.proc.stdin.write(cmd + '\n')
        self.proc.stdin.flush()
        return self.read()

    def close(self, clean: bool = True) -> None:
        """Stop the worker: ``quit`` when ``clean``, else terminate it (it may be mid-run)."""
        if self.proc.poll() is not None:
            return
        if clean:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
        else:  # it may be mid-run: do not wait for it
            self.proc.terminate()
        self.proc.wait()


def _wait_for_quiet(max_foreign: float, max_wait: float, own_pids) -> None:
    """Wait until other processes use at most ``max_foreign`` of the CPU, for a clean run.

    It gives up after ``max_wait`` seconds (logging it) and returns at once if that is 0.

    Args:
        max_foreign: The share of the CPU others may use.
        max_wait: The most seconds to wait.
        own_pids: The workers, whose CPU time does not count.
    """
    if max_wait <= 0:
        return
    start = time.perf_counter()
    while True:
        share = foreign_cpu_share(1.0, own_pids)
        if share <= max_foreign:
            return
        if time.perf_counter() - start >= max_wait:
            break
    log(f'other processes still use {share:.0%} of the CPU after {max_wait:.0f}s; '
        'measuring anyway')


def _measure(size: str, repeats: int, threads: int, tmpdir: str, retries: int,
             max_foreign: float, max_wait: float, train: bool = False,
             variants: tuple = ()) -> dict:
    """Start both workers on the same random weights; return their interleaved runs.

    With ``variants``, the workers are mmllava's in those ``QUANT_VARIANTS`` instead, and the
    runs are keyed by variant.

    On a shared machine, another process's burst spoils a run. Before each run, wait up to
    ``max_wait`` seconds for others to use at most ``max_foreign`` of the CPU; a run during
    which they used more is run again, at most ``retries`` times (the last attempt counts).

    Args:
        size: A key of ``SIZES``.
        repeats: Measured runs per worker (after one warm-up each).
        threads: Threads of each worker.
        tmpdir: Where the weights file is written (and removed once the workers loaded it).
        retries: Redos of a disturbed run.
        max_foreign: The share of the CPU others may use during a run.
        max_wait: The most seconds to wait for a quiet machine before a run.
        train: Time training steps instead of generation.
        variants: ``QUANT_VARIANTS`` to compare instead of the two frameworks.

    Returns:
        dict: Per framework (or variant), its ``repeats`` results (see :func:`worker`).
    """
    weights = os.path.join(tmpdir, f'{size}.safetensors')
    t = time.perf_counter()
    make_weights(size, weights)
    log(f'{size}: random weights built in {time.perf_counter() - t:.1f}s')
    if variants:
        workers = {v: Worker('mmllava', size, weights, threads, variant=v) for v in variants}
    else:
        workers = {fw: Worker(fw, size, weights, threads, train) for fw in FRAMEWORKS}
    mode = 'train' if train else 'inference'
    clean = False
    try:
        for fw, w in workers.items():
            info = w.read()
            log(f'{size}: {fw} loaded in {info["load_s"]:.1f}s, '
                f'RSS {info["rss_loaded_kib"] / 1024:.0f} MiB, {info["threads"]} threads')
        os.remove(weights)
        for fw, w in workers.items():
            t = time.perf_counter()
            w.ask('warmup')
            log(f'{size}: {fw} {mode} warm-up {time.perf_counter() - t:.1f}s')
        runs = {fw: [] for fw in workers}
        for i in range(repeats):
            for fw, w in workers.items():  # interleaved: A, B, A, B, ...
                for attempt in range(retries + 1):
                    _wait_for_quiet(max_foreign, max_wait, [v.proc.pid for v in workers.values()])
                    res = w.ask('run')
                    if train:
                        summary = f'{res["train_throughput"]:.2f} samples/s'
                    else:
                        summary = (f'prefill {res["prefill_latency"]:.1f} ms, '
                                   f'decode {res["decode_throughput"]:.1f} tok/s, '
                                   f'batch {res["batch8_throughput"]:.2f} samples/s')
                    log(f'{size}: {mode} run {i + 1}/{repeats} {fw}: {summary} '
                        f'({res["seconds"]:.1f}s, others used {res["foreign_cpu"]:.0%} CPU)')
                    if res['foreign_cpu'] <= max_foreign or attempt == retries:
                        break
                    log(f'{size}: other processes used {res["foreign_cpu"]:.0%} of the CPU; '
                        'running again')
                runs[fw].append(res)
        clean = True
    finally:
        for w in workers.values():
            w.close(clean)
    return runs


