"""Images from requests that arrive together, predicted together: the service's ``MicroBatcher``."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from starlette.concurrency import run_in_threadpool

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Runs ``fn`` on the images of requests that arrive within ``max_wait`` seconds of each other, together."""

    def __init__(self, fn, *, max_batch: int = 128, max_wait: float = 0.004):
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait
        self.batches = self.images = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, images: np.ndarray) -> np.ndarray:
        # Started by the app's lifespan; a server that runs none (an app mounted inside another, or
        # ``--lifespan off``) gets it started here, in the loop that serves the request.
        if self._task is None or self._task.done() or self._loop is not asyncio.get_running_loop():
            await self.start()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((images, future))
        return await future

    async def _run(self) -> None:
        while True:
            items = [await self._queue.get()]
            count = len(items[0][0])
            deadline = time.monotonic() + self.max_wait
            while count < self.max_batch:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                items.append(item)
                count += len(item[0])
            try:
                result = await run_in_threadpool(self.fn, np.concatenate([images for images, _ in items]))
            except Exception as exc:  # hand the failure to every waiting request; keep serving
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.images += count
            start = 0
            for images, future in items:
                if not future.done():
                    future.set_result(result[start:start + len(images)])
                start += len(images)
