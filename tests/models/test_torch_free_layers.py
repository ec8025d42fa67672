"""The chat, tool, agent and session layers import without torch (issue 10 item 3)."""

import subprocess
import sys

LAYERS = (
    "agentkit.api.agent_options agentkit.api.checks agentkit.api.enums agentkit.api.files "
    "agentkit.api.model_options agentkit.api.requests agentkit.api.responses agentkit.api.which "
    "agentkit.chat.processing agentkit.chat.prompt_bounds agentkit.chat.streams agentkit.chat.tool_prompt "
    "agentkit.chat.tool_parsing agentkit.agent.loop agentkit.agent.history agentkit.agent.tool_limits "
    "agentkit.tools agentkit.sessions agentkit.session_store agentkit.session_directory "
    "agentkit.models.backend agentkit.engine.params"
).split()


def test_chat_agent_tool_layers_do_not_import_torch():
    code = ("import importlib, sys\n"
            f"for name in {LAYERS!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'torch' not in sys.modules, f'importing {name} imported torch'\n")
    out = subprocess.run([sys.executable, "-c", code], cwd="/tmp", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
