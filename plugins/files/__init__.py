"""Built-in plugin package: the file tools `mistralrs_read_file` and `mistralrs_list_files` (runner-api.md §2.9).

`FilesPlugin` (in `agentkit.plugins.files.plugin`) is re-exported here so the plugin manager can
register it as "agentkit.plugins.files:FilesPlugin" (disabled with AGENTKIT_DISABLE_PLUGINS=files).
"""

from agentkit.plugins.files.plugin import FilesPlugin

__all__ = ["FilesPlugin"]
