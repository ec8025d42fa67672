"""The prompts of bench/spec.py: three copy-heavy agent tasks and one non-repetitive one.

Each is a list of chat messages; the copy tasks put a tool result (or code) in the context and ask
for it back, changed a little, as agents do when they patch JSON, edit code or quote a source.
"""

from __future__ import annotations

import json

_ORDERS = {"orders": [
    {"id": 1040 + i, "customer": name, "status": "pending", "items": [{"sku": f"SKU-{300 + 7 * i}", "qty": 1 + i % 3}],
     "total": round(19.5 + 12.25 * i, 2)}
    for i, name in enumerate(["Alice Martin", "Bob Chen", "Carla Diaz", "Dan Okafor", "Eve Novak"])
]}
JSON_TOOL_RESULT = json.dumps(_ORDERS, indent=2)

CODE = "\n".join([
    "def summarize(records):",
    "    total = 0",
    "    count = 0",
    "    largest = None",
    "    for record in records:",
    "        amount = record.get('amount', 0)",
    "        if amount <= 0:",
    "            continue",
    "        total = total + amount",
    "        count = count + 1",
    "        if largest is None or amount > largest:",
    "            largest = amount",
    "    if count == 0:",
    "        return {'total': 0, 'count': 0, 'mean': 0.0, 'largest': None}",
    "    mean = total / count",
    "    return {'total': total, 'count': count, 'mean': mean, 'largest': largest}",
    "",
    "",
    "def report(records, currency='EUR'):",
    "    stats = summarize(records)",
    "    total = stats['total']",
    "    lines = []",
    "    lines.append(f'Records: {stats[\"count\"]}')",
    "    lines.append(f'Total: {total:.2f} {currency}')",
    "    lines.append(f'Mean: {stats[\"mean\"]:.2f} {currency}')",
    "    if stats['largest'] is not None:",
    "        lines.append(f'Largest: {stats[\"largest\"]:.2f} {currency}')",
    "    return '\\n'.join(lines)",
    "",
    "",
    "def main():",
    "    records = [",
    "        {'amount': 12.5},",
    "        {'amount': 40.0},",
    "        {'amount': -3.0},",
    "        {'amount': 7.25},",
    "    ]",
    "    print(report(records))",
    "",
    "main()",
])

PASSAGE = (
    "The lighthouse at Cape Arden was built in 1871 from granite quarried on the island itself. "
    "Its lamp was first fuelled by whale oil, then by kerosene, and finally by electricity in 1932.\n\n"
    "For most of its history the light was kept by the Moreau family, who lived in the cottage at the "
    "foot of the tower. Three generations of keepers recorded every passing ship in a leather-bound log, "
    "and those logs are now kept in the regional archive in Port Selden.\n\n"
    "The station was automated in 1987. Today the cottage is a small museum, open from May to September, "
    "and the tower can be climbed on guided tours that leave every hour from ten in the morning."
)

CASES: dict[str, list[dict[str, str]]] = {
    "json_patch": [
        {"role": "user", "content": "Here is the result of the get_orders tool:\n" + JSON_TOOL_RESULT
         + "\n\nRepeat this JSON exactly, but change the status of order 1042 to \"shipped\". "
           "Output only the JSON."},
    ],
    "rename_variable": [
        {"role": "user", "content": "```python\n" + CODE + "\n```\n\nRename the variable `total` to `grand_total` "
         "everywhere in this code. Output the complete code."},
    ],
    "quote_passage": [
        {"role": "user", "content": "The search tool returned this page:\n\n" + PASSAGE
         + "\n\nQuote the second paragraph of the page word for word."},
    ],
    "sea_poem": [
        {"role": "user", "content": "Write a short poem about the sea."},
    ],
}
COPY_CASES = ("json_patch", "rename_variable", "quote_passage")
