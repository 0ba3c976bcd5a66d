"""Admission: N run, exactly Q wait in FIFO order, the next is refused; cancellation frees places."""

import asyncio

import pytest

from chatstream.facade.admission import Admission, QueueFull


def test_exactly_n_run_q_wait_and_the_rest_are_refused_in_a_burst():
    async def scenario():
        admission = Admission(max_running=2, max_waiting=5)
        order: list[int] = []

        async def client(i: int) -> str:
            try:
                await admission.acquire()
            except QueueFull:
                return "refused"
            order.append(i)
            await asyncio.sleep(0.01)
            admission.release()
            return "served"

        results = await asyncio.gather(*(client(i) for i in range(10)))
        return results, order, admission

    results, order, admission = asyncio.run(scenario())
    assert results == ["served"] * 7 + ["refused"] * 3
    assert order == list(range(7))  # first come, first served
    assert admission.num_running == 0 and admission.num_waiting == 0


def test_a_cancelled_waiter_leaves_the_line_and_a_handed_slot_moves_on():
    async def scenario():
        admission = Admission(max_running=1, max_waiting=2)
        await admission.acquire()
        first = asyncio.ensure_future(admission.acquire())
        second = asyncio.ensure_future(admission.acquire())
        await asyncio.sleep(0)
        assert admission.num_waiting == 2
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        assert admission.num_waiting == 1
        admission.release()  # goes to `second`
        await second
        assert admission.num_running == 1
        # A slot handed over in the same instant the waiter is cancelled is passed on, not lost.
        third = asyncio.ensure_future(admission.acquire())
        await asyncio.sleep(0)
        admission.release()
        third.cancel()
        await asyncio.gather(third, return_exceptions=True)
        return admission

    admission = asyncio.run(scenario())
    assert admission.num_running == 0 and admission.num_waiting == 0


@pytest.mark.parametrize("running, waiting", [(0, 1), (1, -1)])
def test_invalid_limits_are_refused(running, waiting):
    with pytest.raises(ValueError):
        Admission(running, waiting)
