"""The local poller's batching window (poller.gather): ``MaximumBatchingWindowInSeconds`` as AWS
documents it for SQS event sources (a window begins when the previous invocation completes;
records are gathered until the batch is full or the window ends), on an injected clock that
moves a little each time it is read (nothing here waits in real time)."""

from support_pipeline_ops.local.poller import gather


class Clock:
    def __init__(self, tick: float = 0.001) -> None:
        self.now = 100.0
        self.tick = tick  # reading the clock takes time, as a real call does

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class Stop:
    """A stop event whose ``wait`` moves the clock instead of sleeping."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.set_ = False
        self.waits: list[float] = []

    def is_set(self) -> bool:
        return self.set_

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.clock.now += seconds
        return self.set_


class Queue:
    """Answers receive(count, wait) from a script of arrivals: [(at_time, n_messages)]. A long
    poll (wait >= 1) returns as soon as something arrives within it, as moto's does."""

    def __init__(self, clock: Clock, arrivals: list[tuple[float, int]]) -> None:
        self.clock = clock
        self.arrivals = sorted(arrivals)
        self.asked: list[tuple[int, int]] = []
        self.counter = 0

    def _ready(self) -> int:
        return sum(n for at, n in self.arrivals if at <= self.clock.now)

    def __call__(self, count: int, wait: int) -> list[dict]:
        self.asked.append((count, wait))
        if not self._ready() and wait:
            later = [at for at, _ in self.arrivals if self.clock.now < at <= self.clock.now + wait]
            self.clock.now = min(later) if later else self.clock.now + wait
        taken = []
        while len(taken) < count and self.arrivals:
            at, n = self.arrivals[0]
            if at > self.clock.now:
                break
            take = min(n, count - len(taken))
            for _ in range(take):
                self.counter += 1
                taken.append({"MessageId": f"m{self.counter}"})
            if take == n:
                self.arrivals.pop(0)
            else:
                self.arrivals[0] = (at, n - take)
        return taken


def first(n: int) -> list[dict]:
    return [{"MessageId": f"first{i}"} for i in range(n)]


def test_a_record_after_the_window_ended_is_invoked_at_once():
    """An idle poller's window ended long ago (window 0 is the same): no waiting, no calls."""
    clock = Clock()
    queue = Queue(clock, [(100.0, 9)])
    batch, calls = gather(queue, first(1), 10, 99.0, Stop(clock), clock=clock)
    assert [m["MessageId"] for m in batch] == ["first0"] and calls == 0
    assert queue.asked == []


def test_nothing_received_means_no_batch_and_no_more_calls():
    clock = Clock()
    queue = Queue(clock, [(100.0, 3)])
    assert gather(queue, [], 10, 101.0, Stop(clock), clock=clock) == ([], 0)
    assert queue.asked == []


def test_records_arriving_within_the_window_join_the_batch_until_it_is_full():
    clock = Clock()
    queue = Queue(clock, [(100.1, 3), (100.3, 4), (100.5, 5)])
    stop = Stop(clock)
    batch, calls = gather(queue, first(1), 10, 101.0, stop, clock=clock, idle_wait=0.2)
    assert len(batch) == 10  # full: 1 + 3 + 4 + 2 of the last 5
    # invoked within one idle wait of the record that filled it, not at the window's end
    assert 100.5 <= clock.now <= 100.5 + 0.2 + 0.05
    assert all(count <= 10 - 1 for count, _ in queue.asked)
    assert sum(n for _, n in queue.arrivals) == 3  # the rest stay in the queue
    assert calls == len(queue.asked)
    assert calls <= 6  # short polls a fifth of a second apart, not a busy loop


def test_the_window_ends_the_batch_and_its_last_moment_is_still_looked_at():
    clock = Clock()
    queue = Queue(clock, [(100.2, 2), (100.97, 1)])  # the last one inside the final idle wait
    stop = Stop(clock)
    batch, calls = gather(queue, first(1), 10, 101.0, stop, clock=clock, idle_wait=0.2)
    assert len(batch) == 4  # the one that came in the window's last moment is in it
    assert 101.0 <= clock.now <= 101.0 + 0.05  # held to the window's end, not past it
    assert all(wait == 0 for _, wait in queue.asked)  # under a second left: short polls
    assert max(stop.waits) <= 0.2 + 1e-9
    assert calls == len(queue.asked) <= 7


def test_a_long_window_long_polls_while_a_second_or_more_is_left():
    clock = Clock()
    queue = Queue(clock, [(101.5, 1)])
    batch, _ = gather(queue, first(1), 10, 103.0, Stop(clock), clock=clock, idle_wait=0.2)
    assert len(batch) == 2 and 103.0 <= clock.now <= 103.05
    assert queue.asked[0] == (9, 1)  # 3 s left: a long poll, answered when the record came
    assert (8, 0) in queue.asked  # under a second left: a short poll


def test_stopping_ends_the_window_at_once():
    clock = Clock()
    stop = Stop(clock)
    stop.set_ = True
    queue = Queue(clock, [(100.1, 5)])
    batch, calls = gather(queue, first(2), 10, 101.0, stop, clock=clock)
    assert len(batch) == 2 and calls == 0


def test_a_failing_receive_keeps_what_was_already_received():
    clock = Clock()
    answers = iter([[{"MessageId": "second"}], RuntimeError("moto went away")])

    def receive(count: int, wait: int) -> list[dict]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    batch, calls = gather(receive, first(1), 10, 101.0, Stop(clock), clock=clock)
    assert [m["MessageId"] for m in batch] == ["first0", "second"] and calls == 2
