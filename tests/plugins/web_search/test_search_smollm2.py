"""End to end on SmolLM2-135M-Instruct: a request with web_search_options and a search_callback
is answered from the returned content (round 1 forced with tool_choice="required")."""

from __future__ import annotations

import json

import pytest

from agentkit import ChatCompletionRequest, Runner, WebSearchOptions, Which
from agentkit.plugins.web_search import SEARCH_TOOL_NAME


@pytest.mark.slow
def test_smollm2_answers_from_the_search_result(smollm2):
    queries = []

    def search(query):
        queries.append(query)
        return [{"title": "Kettleby archive", "description": "Opening hours and collections",
                 "url": "https://kettleby.example.org/archive",
                 "content": "The Kettleby archive keeps its ledgers in a cellar under the old mill. "
                            "The reading room opens on Tuesdays."}]

    with Runner(Which.GGUF(quantized_model_id=smollm2[0], quantized_filename=smollm2[1], tok_model_id=None),
                progress=False, search_callback=search) as r:
        resp = r.send_chat_completion_request(ChatCompletionRequest(
            model="x", messages=[{"role": "user", "content": "Where does the Kettleby archive keep its ledgers?"}],
            tool_choice="required", max_tokens=160, max_tool_rounds=2, temperature=0.0,
            web_search_options=WebSearchOptions()))
        calls = resp.agentic_tool_calls
        assert calls and calls[0].name == SEARCH_TOOL_NAME and len(queries) >= 1 and queries[0].strip()
        result = json.loads(calls[0].result_content)
        assert result["output"][0]["ref"] == 1 and "cellar" in result["output"][0]["content"]
        answer = resp.choices[0].message.content or ""
        assert "cellar" in answer.lower(), answer
