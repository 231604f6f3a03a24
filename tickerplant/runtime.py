"""Process lifetime helpers shared by every long-running subcommand."""

from __future__ import annotations

import asyncio
import logging
import signal

logger = logging.getLogger(__name__)


async def wait_for_stop_signal() -> signal.Signals:
    """Wait until SIGINT or SIGTERM arrives; return which.

    The handlers stay installed for the rest of the loop's life: a second Ctrl-C while the
    process shuts down is logged, not raised as ``KeyboardInterrupt`` in the middle of the
    clean-up (which would leave, say, the embedded PostgreSQL running).
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if received.done():
            logger.warning("%s received again: still stopping cleanly, please wait", sig.name)
        else:
            received.set_result(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return await received
