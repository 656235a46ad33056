"""The harness's root: `hive-ag3nt` / `hive-m1nd` run an agent's turn loop and its page.

The page (`ui.agent_page`) is wired here, above both, so the harness itself never imports
the ui; it is imported when `serve` starts, and `mcp` (claude launches it on every cold
turn) loads only the MCP server."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys

import anyio

from harness.agent import Agent, AgentConfig
from harness.credential import take_key

__all__ = ["main_agent", "main_manager"]

log = logging.getLogger("harness")


async def _serve() -> None:
    """Run the agent's turn loop (and its page) until SIGTERM/SIGINT."""
    try:
        config = AgentConfig.from_env()
    except KeyError as exc:
        raise SystemExit(f"missing environment variable {exc}; hive-c0re sets it") from exc
    config = dataclasses.replace(config, key=take_key(os.environ))
    agent = Agent(config)
    async with anyio.create_task_group() as tg:
        await tg.start(agent.serve)
        # The page never fails the harness: a taken port is retried in the background.
        from ui.agent_page import serve_agent_page

        await tg.start(serve_agent_page, agent)
        log.info("%s ready on %s", config.name, config.socket)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                agent.cancel()
                tg.cancel_scope.cancel()
                return


def _main(prog: str, argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(prog=prog, description="hyperhive agent harness")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the agent's turn loop and web page")
    sub.add_parser("mcp", help="the stdio MCP server claude launches")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        # In a sandbox the harness is PID 1, which ignores a signal without a handler:
        # until the loop's own handler is in place, SIGTERM still ends it.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        anyio.run(_serve)
    else:
        from harness.mcp_server import main as mcp_main

        mcp_main()


def main_agent(argv: list[str] | None = None) -> None:
    _main("hive-ag3nt", argv)


def main_manager(argv: list[str] | None = None) -> None:
    _main("hive-m1nd", argv)


if __name__ == "__main__":
    _main(sys.argv[1] if len(sys.argv) > 1 else "hive-ag3nt", sys.argv[2:])
