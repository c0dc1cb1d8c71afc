"""Per-request input state, as a table (h11's _state.py): a record not in the table is an error.

Role differences are rows, not branches: an Authorizer gets no STDIN body (§6.3; Apache sends no
STDIN record at all, lighttpd only the empty one), a Filter gets DATA after STDIN (§6.4).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from .constants import RecordType, Role


class InputState(Enum):
    """Which input stream a request is waiting for."""

    PARAMS = "PARAMS"
    STDIN = "STDIN"
    #: A Responder's STDIN brought its CONTENT_LENGTH bytes: the body is whole (InputEnd went
    #: out), and only the stream's empty record may follow (§6.2).
    BODY_COMPLETE = "BODY_COMPLETE"
    DATA = "DATA"
    INPUT_DONE = "INPUT_DONE"
    ABORTED = "ABORTED"

    # Members are singletons and equal only to themselves, so identity is an exact hash; it
    # is a C slot where Enum's own __hash__ (hash of the name) is a Python call, and states
    # are hashed on every transition (ACCEPTS below).
    __hash__ = object.__hash__


class Action(Enum):
    """What to do with a record that the table allows."""

    PARAMS = "params"
    INPUT = "input"
    DISCARD = "discard"
    ABORT = "abort"


_RECEIVING: Final = (
    InputState.PARAMS,
    InputState.STDIN,
    InputState.BODY_COMPLETE,
    InputState.DATA,
    InputState.INPUT_DONE,
)
_REQUEST_INPUT: Final = (RecordType.PARAMS, RecordType.STDIN, RecordType.DATA)


def _build_transitions() -> dict[tuple[Role, InputState, int], Action]:
    table: dict[tuple[Role, InputState, int], Action] = {}
    for role in Role:
        table[role, InputState.PARAMS, RecordType.PARAMS] = Action.PARAMS
        for state in _RECEIVING:
            table[role, state, RecordType.ABORT_REQUEST] = Action.ABORT
        # §5.4: once aborted, the app only owes END_REQUEST; later input is moot.
        for record_type in (*_REQUEST_INPUT, RecordType.ABORT_REQUEST):
            table[role, InputState.ABORTED, record_type] = Action.DISCARD
    table[Role.RESPONDER, InputState.STDIN, RecordType.STDIN] = Action.INPUT
    table[Role.RESPONDER, InputState.BODY_COMPLETE, RecordType.STDIN] = Action.INPUT
    table[Role.FILTER, InputState.STDIN, RecordType.STDIN] = Action.INPUT
    table[Role.FILTER, InputState.DATA, RecordType.DATA] = Action.INPUT
    # §6.3: an Authorizer's input ends with PARAMS; lighttpd still sends an empty STDIN.
    table[Role.AUTHORIZER, InputState.INPUT_DONE, RecordType.STDIN] = Action.DISCARD
    return table


TRANSITIONS: Final = _build_transitions()


def _build_rows() -> dict[tuple[Role, InputState], dict[int, Action]]:
    rows: dict[tuple[Role, InputState], dict[int, Action]] = {
        (role, state): {} for role in Role for state in InputState
    }
    for (role, state, record_type), action in TRANSITIONS.items():
        rows[role, state][int(record_type)] = action
    return rows


#: TRANSITIONS by row: what a request in each (role, state) accepts, by record type number. A
#: request keeps its row, so each record costs one int lookup instead of a three-part key.
ACCEPTS: Final = _build_rows()

#: The state after an input stream's empty record, per role (§6.2-§6.4).
NEXT_STATE: Final[dict[tuple[Role, int], InputState]] = {
    (Role.RESPONDER, RecordType.PARAMS): InputState.STDIN,
    (Role.RESPONDER, RecordType.STDIN): InputState.INPUT_DONE,
    (Role.AUTHORIZER, RecordType.PARAMS): InputState.INPUT_DONE,
    (Role.FILTER, RecordType.PARAMS): InputState.STDIN,
    (Role.FILTER, RecordType.STDIN): InputState.DATA,
    (Role.FILTER, RecordType.DATA): InputState.INPUT_DONE,
}
