"""Built-in agentkit plugins.

Each built-in is imported by module name through the plugin manager; this package imports nothing
so that optional dependencies stay optional.
"""
