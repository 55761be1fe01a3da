"""Tests for serving.batching: AdaptiveBatcher in-process (no server, no wall-clock assertion)."""

from __future__ import annotations

import asyncio

import numpy as np

from serving.batching import AdaptiveBatcher


def _run(coro):
    return asyncio.run(coro)


def _recording(calls: list[int], factor: float = 1.0):
    """A model that records the rows of each call in ``calls`` and returns ``x * factor``."""

    def score(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return x * factor

    return score


async def _passes_until_done(task: asyncio.Future, limit: int) -> int | None:
    """Event-loop passes (``asyncio.sleep(0)``) until ``task`` is done; ``None`` if not within ``limit``."""
    for passes in range(1, limit + 1):
        await asyncio.sleep(0)
        if task.done():
            return passes
    return None


def test_concurrent_submits_share_calls_and_get_their_own_rows():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls, 10), max_batch_size=64, max_wait_s=0.01)
        inputs = [np.full((1 + i % 3, 2), float(i), dtype=np.float32) for i in range(40)]
        outputs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        batcher.close()
        return inputs, outputs

    inputs, outputs = _run(main())
    for x, out in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(out, x * 10)
    assert sum(calls) == sum(len(x) for x in inputs) and len(calls) < len(inputs)
    assert max(calls) <= 64


def test_a_batch_with_company_takes_in_the_requests_of_the_next_loop_pass():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=64, max_wait_s=0.0)
        one = np.ones((1, 2), dtype=np.float32)
        first = [asyncio.create_task(batcher.submit(one)) for _ in range(2)]
        await asyncio.sleep(0)  # two requests queued, the worker about to run
        late = [asyncio.create_task(batcher.submit(one)) for _ in range(3)]  # read by the loop meanwhile
        await asyncio.gather(*first, *late)
        batcher.close()

    _run(main())
    assert calls == [5], f"model calls {calls}: the late requests missed the batch"


#: Loop passes a request may take through submit, the worker and back (it takes 3 today).
PASSES = 20


def test_a_request_alone_is_not_held_back():
    """Alone, a request is scored within a few loop passes although max_wait_s is 5 s: it never waits."""
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=64, max_wait_s=5.0)
        task = asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32)))
        passes = await _passes_until_done(task, PASSES)
        batcher.close()
        return passes

    passes = _run(main())
    assert passes is not None, f"a lone request was not answered within {PASSES} loop passes: it waited"
    assert calls == [1]


def test_a_request_with_company_waits_for_more_when_max_wait_s_is_set():
    """The counterpart, so the check above can fail: two queued requests do wait (for max_wait_s)."""
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=64, max_wait_s=5.0)
        tasks = [asyncio.ensure_future(batcher.submit(np.ones((1, 2), dtype=np.float32))) for _ in range(2)]
        passes = await _passes_until_done(asyncio.gather(*tasks), PASSES)
        batcher.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        return passes, tasks

    passes, tasks = _run(main())
    assert passes is None and calls == [], "two queued requests should wait for company up to max_wait_s"
    assert all(t.cancelled() for t in tasks), "close() settles the waiting requests"


def test_max_batch_size_caps_the_rows_per_call():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(_recording(calls), max_batch_size=8, max_wait_s=0.01)
        await asyncio.gather(*(batcher.submit(np.ones((3, 1), dtype=np.float32)) for _ in range(20)))
        big = await batcher.submit(np.ones((20, 1), dtype=np.float32))  # larger than a batch: runs alone
        batcher.close()
        return big

    assert len(_run(main())) == 20
    assert max(calls[:-1]) <= 8 and calls[-1] == 20


def test_one_failing_request_does_not_fail_its_batch():
    def score(x: np.ndarray) -> np.ndarray:
        if (x < 0).any():
            raise ValueError("negative input")
        return x

    async def main():
        batcher = AdaptiveBatcher(score, max_batch_size=64, max_wait_s=0.01)
        inputs = [np.full((1, 1), -1.0 if i == 3 else float(i), dtype=np.float32) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)
        batcher.close()
        return results

    results = _run(main())
    assert isinstance(results[3], ValueError)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)


def test_closing_after_the_loop_has_closed_is_quiet():
    async def main():
        batcher = AdaptiveBatcher(lambda x: x)
        await batcher.submit(np.ones((1, 1), dtype=np.float32))
        return batcher

    batcher = _run(main())  # asyncio.run closes its loop, as the server's shutdown does
    batcher.close()


def test_close_cancels_queued_requests():
    calls: list[int] = []

    async def main():
        batcher = AdaptiveBatcher(lambda x: calls.append(len(x)) or x)
        tasks = [asyncio.ensure_future(batcher.submit(np.ones((1, 1), dtype=np.float32))) for _ in range(3)]
        await asyncio.sleep(0)  # the submits queue their rows; the worker has not run yet
        batcher.close()
        done, pending = await asyncio.wait(tasks, timeout=2)
        return done, pending

    done, pending = _run(main())
    assert not pending and all(t.cancelled() for t in done) and calls == [], "every queued request settles"


def test_an_error_outside_the_model_call_settles_the_batch():
    def broken_metrics(requests: int, rows: int) -> None:
        raise RuntimeError("metrics exploded")

    async def main():
        batcher = AdaptiveBatcher(lambda x: x, on_batch=broken_metrics)
        result = await asyncio.wait_for(
            asyncio.gather(batcher.submit(np.ones((1, 1), dtype=np.float32)), return_exceptions=True), 2
        )
        again = await asyncio.wait_for(
            asyncio.gather(batcher.submit(np.ones((1, 1), dtype=np.float32)), return_exceptions=True), 2
        )
        batcher.close()
        return result, again

    result, again = _run(main())
    assert isinstance(result[0], RuntimeError) and isinstance(again[0], RuntimeError), "the worker kept serving"
