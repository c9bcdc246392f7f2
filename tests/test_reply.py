"""Reply: one answer, set or failed, the first one given wins, read with a timeout."""

from __future__ import annotations

import threading

import pykka
import pytest

from actors.reply import Reply, SystemStopped

ANSWER_S = 5.0


def test_a_set_reply_answers_every_get_with_its_value() -> None:
    reply: Reply[int] = Reply()

    assert reply.set(7)

    assert reply.get(timeout=ANSWER_S) == 7
    assert reply.get(timeout=ANSWER_S) == 7


def test_a_failed_reply_raises_its_error_on_every_get() -> None:
    reply: Reply[int] = Reply()
    error = SystemStopped("the repository stopped before it answered")

    assert reply.fail(error)

    for _ in range(2):
        with pytest.raises(SystemStopped) as raised:
            reply.get(timeout=ANSWER_S)
        assert raised.value is error


def test_an_unanswered_reply_times_out() -> None:
    reply: Reply[int] = Reply()

    with pytest.raises(pykka.Timeout):
        reply.get(timeout=0.01)


def test_a_failure_after_the_answer_is_ignored() -> None:
    reply: Reply[int] = Reply()
    reply.set(1)

    assert not reply.fail(SystemStopped("too late"))

    assert reply.get(timeout=ANSWER_S) == 1


def test_an_answer_after_a_failure_is_ignored() -> None:
    reply: Reply[int] = Reply()
    reply.fail(SystemStopped("stopped"))

    assert not reply.set(1)

    with pytest.raises(SystemStopped):
        reply.get(timeout=ANSWER_S)


def test_a_second_answer_is_ignored_even_the_same_one() -> None:
    reply: Reply[None] = Reply()
    reply.set(None)

    assert not reply.set(None)
    assert not reply.set(None)

    assert reply.get(timeout=ANSWER_S) is None


@pytest.mark.parametrize("round_", range(50))
def test_of_answers_racing_on_threads_exactly_one_wins_and_is_what_get_returns(
    round_: int,
) -> None:
    reply: Reply[int] = Reply()
    racers = 8
    start = threading.Barrier(racers)
    won: list[int] = []

    def answer(n: int) -> None:
        start.wait(ANSWER_S)
        given = reply.set(n) if n % 2 else reply.fail(SystemStopped(str(n)))
        if given:
            won.append(n)

    threads = [threading.Thread(target=answer, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(ANSWER_S)

    assert len(won) == 1
    if won[0] % 2:
        assert reply.get(timeout=ANSWER_S) == won[0]
    else:
        with pytest.raises(SystemStopped, match=f"^{won[0]}$"):
            reply.get(timeout=ANSWER_S)
