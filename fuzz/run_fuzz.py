"""Long-running fuzzing of the protocol core and the params translator (not run in CI).

    python3 fuzz/run_fuzz.py [--seconds 180] [--engine hypothesis|atheris] [--targets a,b]

The targets are the checks of tests/protocol/test_fuzz.py (which CI runs with ~100 examples
each): whatever bytes arrive, in whatever chunks, the protocol core ends in events or
RemoteProtocolError, holds no more memory than its limits allow, and answers in proportion;
valid conversations come out exactly; any params make a valid environ and ASGI scope.

- ``hypothesis`` runs each target in rounds of --round-examples with a fresh seed until the
  time is up, shrinking any failure to a minimal input.
- ``atheris`` (``pip install atheris``) drives the same hypothesis strategies with libFuzzer's
  coverage-guided mutation through ``fuzz_one_input``; failures are not shrunk.

Every example runs under a 2-second alarm, so a hang is reported as a failure with its input.
It prints the inputs tried per target every --report-seconds and each distinct failure
(exception type and first line) once, with the input; it exits 1 if any failure was found.
"""

from __future__ import annotations

import argparse
import atexit
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests" / "protocol")]

HANG_SECONDS = 2
TARGETS = (
    "server-bytes",
    "server-large-records",
    "server-conversation",
    "server-mutated",
    "client-bytes",
    "pairs",
    "translator",
)

tried: Counter[str] = Counter()
failures: dict[tuple[str, str], str] = {}


class Hang(Exception):
    """An example ran for HANG_SECONDS: the protocol core or the translator did not settle."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"no result after {HANG_SECONDS} s")


def counted(name: str, check: Callable[..., Any]) -> Callable[..., None]:
    """``check`` under the hang alarm, counted as one input tried for ``name``."""

    def run(**values: Any) -> None:
        tried[name] += 1
        signal.alarm(HANG_SECONDS)
        try:
            check(**values)
        finally:
            signal.alarm(0)

    run.__name__ = name.replace("-", "_")
    return run


def targets() -> dict[str, tuple[Callable[..., None], dict[str, Any]]]:
    """name -> (check, hypothesis strategies for its keyword arguments)."""
    import test_fuzz as tf  # noqa: PLC0415 (imported after atheris instruments imports)
    from hypothesis import strategies as st  # noqa: PLC0415

    def conversation(data: Any, cuts: list[int]) -> None:
        wire, _ = data.draw(tf.conversations())
        tf.check_server_input(wire, cuts, tf.ProtocolSettings(max_params_count=1000))

    def mutated(data: Any, cuts: list[int]) -> None:
        wire, _ = data.draw(tf.conversations())
        tf.check_server_input(data.draw(tf.mutations(wire)), cuts)

    def translator(pairs: list[tuple[bytes, bytes]], root_path: str) -> None:
        tf.check_translator(pairs, root_path)

    small_cuts = {"cuts": tf.SMALL_CHUNKINGS}
    return {
        "server-bytes": (tf.check_server_input, {"data": st.binary(max_size=2000), **small_cuts}),
        "server-large-records": (
            tf.check_server_input,
            {"data": tf.large_records(), "cuts": tf.CHUNKINGS},
        ),
        "server-conversation": (conversation, {"data": st.data(), **small_cuts}),
        "server-mutated": (mutated, {"data": st.data(), **small_cuts}),
        "client-bytes": (tf.check_client_input, {"data": st.binary(max_size=2000), **small_cuts}),
        "pairs": (tf.check_pairs, {"data": st.binary(max_size=2000)}),
        "translator": (
            translator,
            {"pairs": tf.PAIRS, "root_path": st.sampled_from(["", "/app", "/app/"])},
        ),
    }


def hypothesis_test(name: str, check: Callable[..., Any], strategies: dict[str, Any], n: int):
    from hypothesis import HealthCheck, given, settings  # noqa: PLC0415

    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )(given(**strategies)(counted(name, check)))


def record_failure(name: str, error: BaseException, text: str) -> None:
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    key = (name, f"{type(error).__name__}: {first_line}")
    if key not in failures:
        failures[key] = text
        print(f"\n*** FAILURE in {name}: {key[1]}\n{text}", flush=True)


def run_hypothesis(selected: list[str], seconds: float, round_examples: int, report: float) -> None:
    from hypothesis import seed  # noqa: PLC0415

    chosen = {name: spec for name, spec in targets().items() if name in selected}
    deadline = time.monotonic() + seconds
    next_report = time.monotonic() + report
    while time.monotonic() < deadline:
        for name, (check, strategies) in chosen.items():
            test = seed(random.getrandbits(64))(
                hypothesis_test(name, check, strategies, round_examples)
            )
            try:
                test()
            except Exception as error:  # a property failed; hypothesis printed the input
                record_failure(name, error, traceback.format_exc(limit=-6))
            if time.monotonic() >= next_report:
                print_progress()
                next_report = time.monotonic() + report
            if time.monotonic() >= deadline:
                break


def run_atheris(selected: list[str], seconds: float, report: float) -> None:
    import atheris  # noqa: PLC0415

    with atheris.instrument_imports(include=["fcgigw", "test_fuzz"]):
        chosen = [
            (name, hypothesis_test(name, check, strategies, 1))
            for name, (check, strategies) in targets().items()
            if name in selected
        ]
    last_report = [time.monotonic()]
    deadline = time.monotonic() + seconds

    def one_input(data: bytes) -> None:
        if time.monotonic() >= deadline:
            summary()  # libFuzzer's own -max_total_time exits without running atexit
            os._exit(0)
        if not data:
            return
        name, test = chosen[data[0] % len(chosen)]
        try:
            test.hypothesis.fuzz_one_input(data[1:])
        except Exception as error:
            record_failure(name, error, f"input: {data!r}\n{traceback.format_exc(limit=-6)}")
        if time.monotonic() - last_report[0] >= report:
            print_progress()
            last_report[0] = time.monotonic()

    atheris.Setup([sys.argv[0], "-max_len=4096"], one_input)
    atheris.Fuzz()  # never returns: one_input ends the process when the time is up


def print_progress() -> None:
    counts = ", ".join(f"{name} {count}" for name, count in sorted(tried.items()))
    print(
        f"[{time.strftime('%H:%M:%S')}] inputs tried: {sum(tried.values())} ({counts})", flush=True
    )


def summary() -> None:
    print_progress()
    print(f"distinct failures: {len(failures)}")
    for name, description in failures:
        print(f"  {name}: {description}")
    sys.stdout.flush()
    if failures:
        os._exit(1)


def main() -> None:
    names = list(TARGETS)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    parser.add_argument("--targets", default=",".join(names), help="comma-separated")
    parser.add_argument("--round-examples", type=int, default=300)
    parser.add_argument("--report-seconds", type=float, default=30)
    args = parser.parse_args()
    selected = args.targets.split(",")
    if unknown := set(selected) - set(names):
        parser.error(f"unknown target(s) {', '.join(sorted(unknown))}; choose from {names}")
    signal.signal(signal.SIGALRM, _alarm)
    atexit.register(summary)
    print(f"fuzzing {', '.join(selected)} for {args.seconds:.0f} s with {args.engine}", flush=True)
    if args.engine == "atheris":
        run_atheris(selected, args.seconds, args.report_seconds)
    else:
        run_hypothesis(selected, args.seconds, args.round_examples, args.report_seconds)


if __name__ == "__main__":
    main()
