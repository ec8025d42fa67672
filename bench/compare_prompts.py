"""The prompts of bench/compare.py: questions, the long prompt, the agent conversation and its tools.

Scope: fixed texts and the helpers that tag them per repetition and attempt (so no prefix cache
can serve a re-run). Non-goals: running or measuring anything (bench/compare_run.py).
"""

from __future__ import annotations

import json

P1 = "Write a short poem about the sea."
WARMUP = "Say hello."

QUESTIONS = [
    "Write a short poem about the sea.",
    "Explain what a hash table is in two sentences.",
    "List three tips for staying focused while studying.",
    "Describe a sunrise over the mountains.",
    "What are the benefits of regular exercise?",
    "Summarize the plot of a heist movie in three sentences.",
    "Give me a recipe idea for a quick vegetarian dinner.",
    "Why is the sky blue? Explain simply.",
    "How do airplanes stay in the air?",
    "Write a haiku about autumn leaves.",
    "What is the difference between weather and climate?",
    "Suggest a name for a friendly robot and explain it.",
    "Explain recursion to a ten-year-old.",
    "What should I pack for a weekend camping trip?",
    "Describe the taste of a ripe mango.",
    "How does a refrigerator keep food cold?",
    "Write a limerick about a cat who loves boxes.",
    "What are three good habits for writing clean code?",
    "Explain how vaccines train the immune system.",
    "Tell me a fun fact about octopuses.",
    "How can I make my small apartment feel bigger?",
    "Describe a busy train station at rush hour.",
    "What is the Pythagorean theorem used for?",
    "Give two arguments for learning a second language.",
    "Write the opening line of a mystery novel.",
    "How do bees make honey?",
    "Explain what inflation means for savings.",
    "Describe the sound of rain on a tin roof.",
    "What is a good way to start journaling?",
    "Why do cats purr?",
    "Plan a relaxing Sunday afternoon in three steps.",
    "Explain how a compass works.",
]

PARAGRAPH = (
    "the harbour town woke slowly under a grey sky. Fishing boats returned with their nets half full, "
    "gulls circled above the market, and the baker opened his shutters while the first buses climbed "
    "the hill toward the old lighthouse. Children walked to school along the sea wall, teachers "
    "unlocked their classrooms, and the ferry to the islands sounded its horn before leaving the pier."
)

TAG_WORDS = ["amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
             "kestrel", "lagoon", "meadow", "nimbus", "orchid", "prairie", "quartz", "raven", "sierra",
             "tundra", "umber", "violet", "willow", "xenon", "yarrow", "zephyr"]

TOOLS = [
    {"name": "get_weather", "description": "Get the current weather and a three-day forecast for a city.",
     "parameters": {"type": "object", "properties": {
         "city": {"type": "string", "description": "City name, e.g. Paris"},
         "units": {"type": "string", "enum": ["metric", "imperial"], "description": "Unit system"}},
         "required": ["city"]}},
    {"name": "search_places", "description": "Search restaurants, shops and attractions near a location.",
     "parameters": {"type": "object", "properties": {
         "query": {"type": "string", "description": "What to look for, e.g. vegetarian restaurant"},
         "near": {"type": "string", "description": "Address or landmark"},
         "max_results": {"type": "integer", "description": "At most this many results (1-20)"},
         "open_now": {"type": "boolean", "description": "Only places open right now"}},
         "required": ["query", "near"]}},
    {"name": "calendar_add_event", "description": "Add an event to the user's calendar.",
     "parameters": {"type": "object", "properties": {
         "title": {"type": "string"}, "start": {"type": "string", "description": "ISO 8601 start time"},
         "end": {"type": "string", "description": "ISO 8601 end time"},
         "location": {"type": "string"}, "attendees": {"type": "array", "items": {"type": "string"}}},
         "required": ["title", "start"]}},
    {"name": "send_email", "description": "Send an email on behalf of the user.",
     "parameters": {"type": "object", "properties": {
         "to": {"type": "array", "items": {"type": "string"}, "description": "Recipient addresses"},
         "subject": {"type": "string"}, "body": {"type": "string", "description": "Plain text body"},
         "cc": {"type": "array", "items": {"type": "string"}}}, "required": ["to", "subject", "body"]}},
    {"name": "read_file", "description": "Read a text file from the user's workspace.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string", "description": "Path relative to the workspace root"},
         "max_bytes": {"type": "integer", "description": "Truncate after this many bytes"}}, "required": ["path"]}},
    {"name": "write_file", "description": "Create or overwrite a text file in the user's workspace.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "content": {"type": "string"},
         "append": {"type": "boolean", "description": "Append instead of overwriting"}},
         "required": ["path", "content"]}},
    {"name": "run_python", "description": "Run a short Python snippet in a sandbox and return stdout.",
     "parameters": {"type": "object", "properties": {
         "code": {"type": "string", "description": "Python source code"},
         "timeout_s": {"type": "number", "description": "Wall-clock limit in seconds"}}, "required": ["code"]}},
]

SYSTEM_BODY = (
    "session. You are Atlas, a careful personal assistant that helps the user plan their day, find "
    "places, manage their calendar and handle email. Follow these rules:\n"
    "1. Be concise: answer in at most three sentences unless the user asks for more detail.\n"
    "2. When a task needs live data or an action, call exactly one tool per step.\n"
    "3. Never invent tool results; wait for the tool response before answering.\n"
    "4. Ask a short clarifying question when a required argument is missing.\n"
    "5. Confirm before sending email or changing the calendar, and summarize what you did afterwards.\n"
    "6. Use the user's local time zone (Europe/Paris) and metric units unless told otherwise.\n"
    "7. Keep private data private: do not repeat addresses or email contents unless needed.\n\n"
    "To call a tool, reply with a single line of the form\n"
    "<tool_call>{\"name\": <tool name>, \"arguments\": <JSON object>}</tool_call>\n"
    "The tools you may call are described by these JSON schemas:\n<tools>\n"
)

USER_TURNS = [
    "What's the weather like in Paris today?",
    "Find me a vegetarian restaurant near the Louvre for tonight.",
    "Add a dinner reservation at 8 pm to my calendar.",
    "Send an email to Alice telling her about the plan.",
    "Summarize everything you did for me in this conversation.",
    "Thanks! Anything else I should know for tomorrow?",
]


def tag(rep: int, attempt: int) -> str:
    """First words that differ per repetition and attempt, so no prefix cache can serve them."""
    return f"{TAG_WORDS[(rep * 7 + attempt * 3) % len(TAG_WORDS)].capitalize()}-{rep}.{attempt}"


def long_prompt(rep: int, attempt: int) -> str:
    parts = [f"Part {k}: {PARAGRAPH}" for k in range(1, 7)]
    ask = "Summarize these notes in one sentence that mentions the boats, the market and the ferry."
    return f"{tag(rep, attempt)} notes.\n\n" + "\n\n".join(parts) + f"\n\n{ask}"


def agent_system(rep: int, attempt: int) -> str:
    tools = "\n".join(json.dumps({"type": "function", "function": t}) for t in TOOLS)
    return f"{tag(rep, attempt)} {SYSTEM_BODY}{tools}\n</tools>"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]
