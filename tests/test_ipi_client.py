"""The socket client's own pieces, without i-PI: extras formatting, message buffering, extras selection.

The exchanges with a real i-PI are in test_ipi.py; here the checks are exact (bit-for-bit numbers, byte streams
split at every position), which a run of i-PI cannot reach.
"""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest

from lesmd.ipi import IPIDriver, _Inbox, _Outbox, json_numbers, parse_extras


def test_extras_numbers_round_trip_float64_exactly_at_17_digits_and_float32_at_9():
    rng = np.random.default_rng(1)
    values = rng.normal(scale=[1e-12, 1.0, 3e5], size=(200, 3))
    back = np.array(json.loads(json_numbers(values, 17)))
    assert back.shape == (200, 3)
    np.testing.assert_array_equal(back, values)  # bit for bit
    single = values.astype(np.float32)
    back32 = np.array(json.loads(json_numbers(single, 9)), dtype=np.float32)
    np.testing.assert_array_equal(back32, single)
    # 9 digits would not be enough for float64: the format really carries the precision it claims
    assert not np.array_equal(np.array(json.loads(json_numbers(values, 9))), values)


@pytest.mark.parametrize("shape", [(), (0,), (5,), (4, 3), (2, 3, 3)])
def test_extras_numbers_are_json_with_the_array_shape(shape):
    values = np.arange(int(np.prod(shape)), dtype=float).reshape(shape) - 2.5
    assert np.array_equal(np.array(json.loads(json_numbers(values))).reshape(shape), values)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_extras_are_an_error_not_invalid_json(bad):
    with pytest.raises(ValueError, match="NaN or inf in the extras"):
        json_numbers(np.array([0.1, bad]))


class _Dipoles:
    """A potential returning fixed dipole/charges: what the extras JSON must carry, converted to e·Bohr."""

    dtype = "torch.float64"

    def compute(self, numbers, positions, cell, pbc, properties):
        n = len(numbers)
        out = {"energy": np.array(-1.5), "forces": np.zeros((n, 3)), "stress": np.zeros((3, 3)),
               "charges": np.linspace(-0.8, 0.4, n), "dipole": np.array([0.1, -0.2, 0.3])}
        return {k: v for k, v in out.items() if k in properties}


def test_extras_none_sends_an_empty_string_and_asks_the_potential_for_nothing_extra():
    assert parse_extras("none") == parse_extras("") == parse_extras(None) == ()
    driver = IPIDriver(_Dipoles(), [8, 1, 1], extras="none")
    assert driver.properties == ("energy", "forces", "stress")
    assert driver.compute_structure(np.eye(3) * 20.0, np.zeros((3, 3)))[3] == ""


def test_extras_json_equals_json_dumps_of_the_converted_values():
    from lesmd.units import DIPOLE_EA_TO_AU

    driver = IPIDriver(_Dipoles(), [8, 1, 1], extras="dipole,charges")
    got = json.loads(driver.compute_structure(np.eye(3) * 20.0, np.zeros((3, 3)))[3])
    assert got == json.loads(json.dumps({"dipole": (np.array([0.1, -0.2, 0.3]) * DIPOLE_EA_TO_AU).tolist(),
                                         "charges": np.linspace(-0.8, 0.4, 3).tolist()}))


def test_messages_split_at_any_byte_are_reassembled_and_bursts_need_one_receive():
    """i-PI's stream (header, cell, positions, next header) read through the buffer equals what was sent, whether
    it arrives one byte at a time or in one burst."""
    nat = 7
    rng = np.random.default_rng(0)
    h, pos = rng.normal(size=(3, 3)), rng.normal(size=(nat, 3))
    stream = (b"POSDATA     " + h.tobytes() + np.linalg.inv(h).tobytes() + np.int32(nat).tobytes() + pos.tobytes()
              + b"GETFORCE    ")
    for chunk in (1, 5, len(stream)):
        a, b = socket.socketpair()
        with a, b:
            def feed(a=a, chunk=chunk):
                for k in range(0, len(stream), chunk):
                    a.sendall(stream[k:k + chunk])
            thread = threading.Thread(target=feed)
            thread.start()
            inbox = _Inbox(b, size=64)  # smaller than one message: the buffer must grow
            assert bytes(inbox.take(12)) == b"POSDATA     "
            head = bytes(inbox.take(148))
            assert np.array_equal(np.frombuffer(head, np.float64, 9).reshape(3, 3), h)
            assert np.frombuffer(head, np.int32, 1, 144)[0] == nat
            assert np.array_equal(np.frombuffer(bytes(inbox.take(24 * nat)), np.float64).reshape(nat, 3), pos)
            assert bytes(inbox.take(12)) == b"GETFORCE    "
            thread.join()


def test_forceready_reply_has_the_ipi_layout():
    """FORCEREADY, energy (f8), N (i4), forces (3N f8), virial (9 f8), extras length (i4), extras: the layout
    i-PI's _recv_forces_bulk reads."""
    nat = 4
    forces = np.arange(3 * nat, dtype=float).reshape(nat, 3) * 0.5
    virial = np.arange(9, dtype=float).reshape(3, 3)
    outbox = _Outbox(nat)
    for extras in ('{"dipole": [1, 2, 3]}', ""):
        reply = bytes(outbox.pack(-2.25, forces, virial, extras))
        assert reply[:12] == b"FORCEREADY  "
        assert np.frombuffer(reply, np.float64, 1, 12)[0] == -2.25
        assert np.frombuffer(reply, np.int32, 1, 20)[0] == nat
        assert np.array_equal(np.frombuffer(reply, np.float64, 3 * nat, 24), forces.reshape(-1))
        assert np.array_equal(np.frombuffer(reply, np.float64, 9, 24 + 24 * nat), virial.reshape(-1))
        size = np.frombuffer(reply, np.int32, 1, 96 + 24 * nat)[0]
        assert size == len(extras) and reply[100 + 24 * nat:].decode() == extras
    with pytest.raises(ValueError, match="3 forces for 4 atoms"):
        outbox.pack(0.0, np.zeros((3, 3)), virial, "")


def _accept_and_close_server(name: str, stop: threading.Event, counter: list[int]) -> socket.socket:
    path = f"/tmp/ipi_{name}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    server.settimeout(0.05)

    def loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            counter[0] += 1
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return server


def test_reconnect_against_a_server_that_closes_at_once_gives_up_with_back_off(tmp_path):
    """--reconnect counts from the last evaluation: a peer that accepts and closes (no work) is retried a bounded
    number of times with back-off and few log lines, then the client exits with a one-line reason."""
    import io
    import os
    import time

    from lesmd.ipi import IPIClient

    name = f"lesmd-closer-{os.getpid()}"
    stop, counter = threading.Event(), [0]
    server = _accept_and_close_server(name, stop, counter)
    log = io.StringIO()
    try:
        client = IPIClient(IPIDriver(_Dipoles(), [8, 1, 1], extras=()), unix=name, reconnect=3.0, timeout=5.0,
                           log=log)  # fmt: skip
        start = time.monotonic()
        with pytest.raises(ConnectionError, match="gave up after 3 s"):
            client.run()
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        server.close()
        os.unlink(f"/tmp/ipi_{name}")
    assert 2.5 < elapsed < 8.0
    assert counter[0] <= 12  # 0.2, 0.4, 0.8, 1.6 s … not 150 000 reconnections
    assert log.getvalue().count("\n") <= 4


def test_posdata_with_more_atoms_than_the_template_is_refused_before_reading_them():
    from lesmd.ipi import IPIClient

    a, b = socket.socketpair()
    header = np.zeros(18, np.float64).tobytes() + np.array([2_000_000_000], np.int32).tobytes()
    a.sendall(b"POSDATA     " + header)
    client = IPIClient(IPIDriver(_Dipoles(), [8, 1, 1], extras=()), unix="unused", log=None)
    with pytest.raises(ValueError, match="i-PI sent 2000000000 atoms but the template has 3"):
        client.serve(b)
    a.close()


def test_atoms_in_another_order_than_the_template_are_refused_on_the_first_step(shared_data):
    """i-PI's first structure is the template's, with O and H indices exchanged: a clear error, not 9×10⁴ K."""
    import ase.io

    from lesmd.units import BOHR

    atoms = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", 0)
    numbers, positions = atoms.numbers, atoms.positions
    h = atoms.cell.array.T / BOHR
    order = np.arange(len(numbers))[::-1]  # i-PI's file in reverse order (O block first), the template not
    driver = IPIDriver(_Dipoles(), numbers, extras=(), template_positions=positions)
    with pytest.raises(ValueError, match="another order than the template"):
        driver.compute_structure(h, positions[order] / BOHR)
    # the right order passes, and so does a template from another frame (positions not comparable)
    IPIDriver(_Dipoles(), numbers, extras=(), template_positions=positions).compute_structure(h, positions / BOHR)
    other = ase.io.read(shared_data / "water_rpbe_d3_bec_100.xyz", 50).positions
    IPIDriver(_Dipoles(), numbers, extras=(), template_positions=other).compute_structure(h, positions / BOHR)
