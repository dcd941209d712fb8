"""Keep a cancelled source cancelled on Python 3.11."""

import asyncio


def honour_cancellation() -> None:
    """Raise CancelledError if this task was cancelled but the cancellation got lost.

    Python 3.11's asyncio.wait_for, which aiomqtt and pymodbus use for their requests, can swallow
    a cancellation that lands as the awaited operation completes (CPython gh-86296, fixed in 3.12);
    a source would then run on after the gateway asked it to stop. Sources call this at the safe
    points of their loops.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
