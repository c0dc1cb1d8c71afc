"""Forking a supervised child: a signal sent the moment it exists is not lost."""

from __future__ import annotations

import os
import signal
import time

from fcgigw.server.forked import fork_with_ready_pipe, leave_parent, recording_signals
from fcgigw.server.signal_inbox import SignalInbox

#: How long the test's child dawdles before it leaves its parent's signal handling: the
#: window in which a TTOU right after a TTIN used to lose the worker's SIGTERM.
DAWDLE_SECONDS = 0.3


def test_a_signal_sent_before_the_child_has_its_own_handling_still_stops_it() -> None:
    inbox = SignalInbox((signal.SIGTERM, signal.SIGTTIN))

    def child_main(ready_write: int) -> int:
        time.sleep(DAWDLE_SECONDS)  # still the parent's recording handlers, as a new worker
        leave_parent(inbox, (), ())
        time.sleep(DAWDLE_SECONDS)  # the default SIGTERM ends it here, if it was kept
        return 0

    with recording_signals(inbox, "the test"):
        pid, ready_read = fork_with_ready_pipe(child_main)
        os.kill(pid, signal.SIGTERM)  # at once, as the supervisor stops a worker
        _, status = os.waitpid(pid, 0)
        os.close(ready_read)
        parent_got = list(inbox.pending)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM, "the SIGTERM was lost"
    assert parent_got == []  # it was the child's, not the parent's


def test_the_parent_gets_its_signals_again_after_the_fork() -> None:
    inbox = SignalInbox((signal.SIGTTIN,))
    with recording_signals(inbox, "the test"):
        pid, ready_read = fork_with_ready_pipe(lambda ready_write: 0)
        os.waitpid(pid, 0)
        os.close(ready_read)
        assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == set()
        os.kill(os.getpid(), signal.SIGTTIN)
        deadline = time.monotonic() + 5
        while not inbox.pending and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(inbox.pending) == [signal.SIGTTIN]
