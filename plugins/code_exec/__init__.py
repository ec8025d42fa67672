"""Built-in plugin package: sandboxed code execution and the shell tool (runner-api.md §2.6, §2.7, §2.9).

`CodeExecPlugin` (`agentkit.plugins.code_exec.plugin`) is re-exported here so the plugin manager
registers it as "agentkit.plugins.code_exec:CodeExecPlugin" (disabled with
AGENTKIT_DISABLE_PLUGINS=code_exec). Importing the package does not import jupyter_client; the
executor modules load when a request first uses them.
"""

from agentkit.plugins.code_exec.plugin import CodeExecPlugin

__all__ = ["CodeExecPlugin"]
