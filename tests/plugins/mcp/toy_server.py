"""A small MCP server for the MCP plugin's tests (run as a script: stdio or streamable HTTP).

Scope: the behaviours third-party servers do not offer on demand: `crash` (the process dies
mid-call), `sleep` (with or without progress notifications), `big` (an output of N bytes),
`echo` (a name several instances share: collisions), `grow` (adds a tool and sends
`notifications/tools/list_changed`), `look` (text + image + structured content, read-only) and
`wipe` (annotated destructive), `crash_destructive` (destructive and crashing) and `megabyte`
(1 MB, no arguments). With `TOY_EVENTS=<file>` the server appends "start/end/cancelled <tool>
<id>" lines, so tests can see overlap and cancellation from the server's side.

Usage: `python toy_server.py [--name NAME] [--http PORT [--require-token T]] [--crash-on-start]
[--fail-unless-exists FILE]`.
Non-goals: anything a real server would need (auth, resources, prompts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ImageContent, TextContent, ToolAnnotations

PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()


def _event(text: str) -> None:
    path = os.environ.get("TOY_EVENTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


def build(name: str) -> MCPServer:
    """The server with every toy tool; `name` is echoed back so tests can tell instances apart."""
    server = MCPServer(name, log_level="WARNING")

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back, prefixed with this server's name."""
        return f"{name}: {text}"

    @server.tool()
    def crash() -> str:
        """Kill this server process in the middle of the call."""
        os._exit(3)

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def crash_destructive() -> str:
        """Kill this server process in the middle of a destructive call."""
        _event("start crash_destructive")
        os._exit(3)

    @server.tool()
    async def sleep(seconds: float, progress_every: float = 0.0, tag: str = "", ctx: Context | None = None) -> str:
        """Sleep `seconds`; report progress every `progress_every` seconds when > 0."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        step = 0
        _event(f"start sleep {tag}")
        try:
            while (left := end - loop.time()) > 0:
                await asyncio.sleep(min(left, progress_every) if progress_every > 0 else left)
                step += 1
                if progress_every > 0 and ctx is not None:
                    await ctx.report_progress(step, None, f"step {step}")
        except BaseException:
            _event(f"cancelled sleep {tag}")
            raise
        _event(f"end sleep {tag}")
        return f"slept {seconds}"

    @server.tool()
    def megabyte() -> str:
        """Return one megabyte of text."""
        return big(1_000_000)

    @server.tool()
    def big(n_bytes: int) -> str:
        """Return `n_bytes` of text."""
        line = "0123456789abcdef" * 4 + "\n"
        return (line * (n_bytes // len(line) + 1))[:n_bytes]

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def look() -> list[TextContent | ImageContent]:
        """A text block and a 1x1 PNG image."""
        return [TextContent(type="text", text="a red pixel"),
                ImageContent(type="image", data=PNG_1PX, mime_type="image/png")]

    @server.tool()
    def measure(text: str) -> dict[str, int]:
        """Structured output: the length and word count of `text`."""
        return {"chars": len(text), "words": len(text.split())}

    @server.tool(annotations=ToolAnnotations(destructiveHint=True))
    def wipe(path: str) -> str:
        """Pretend to delete `path` (annotated destructive)."""
        return f"wiped {path}"

    @server.tool()
    async def grow(tool_name: str, ctx: Context) -> str:
        """Add a tool called `tool_name` and tell the client the tool list changed."""
        def added() -> str:
            return f"{tool_name} ran"
        server.add_tool(added, name=tool_name, description="A tool added at run time.")
        await ctx.request_context.session.send_tool_list_changed()
        return f"added {tool_name}"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default="toy")
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--require-token", default=None, help="HTTP: answer 401 without this bearer token")
    parser.add_argument("--crash-on-start", action="store_true")
    parser.add_argument("--fail-unless-exists", default=None, help="exit at start unless this file exists")
    args = parser.parse_args()
    if args.crash_on_start or (args.fail_unless_exists and not os.path.exists(args.fail_unless_exists)):
        print("toy server: failing on start as asked", file=sys.stderr)
        sys.exit(2)
    server = build(args.name)
    if args.http is None:
        server.run()
        return
    import uvicorn

    app = server.streamable_http_app()
    if args.require_token:
        app = _require_token(app, args.require_token)
    uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="warning")


def _require_token(app, token: str):
    """Wrap an ASGI app: 401 unless `Authorization: Bearer <token>` and `X-Toy: yes` are sent."""
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if (headers.get(b"authorization") != f"Bearer {token}".encode()
                    or headers.get(b"x-toy") != b"yes"):
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing token"})
                return
        await app(scope, receive, send)
    return guarded


if __name__ == "__main__":
    main()
