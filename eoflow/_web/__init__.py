"""The worker's web server: metrics, health, committed-state queries, status, app pages.

A layer beside the CLI, above the runtime: it reads the runtime's state and never writes
it. The worker starts it (``web_enabled``) as a task of its TaskGroup.
"""
