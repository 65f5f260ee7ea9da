"""i-PI adapter: atomic-unit conversion, the socket client with extras, and `lesmd serve`.

i-PI (Kapil et al., Comput. Phys. Commun. 236, 214 (2019); Litman et al., J. Chem. Phys. 161, 062504 (2024))
moves the nuclei and asks a client for the energy, forces and virial of each structure (bead, replica) over a
socket. Facts this module relies on (ipi 3.x):

- Messages are 12-byte ASCII headers. i-PI may send POSDATA then GETFORCE with no STATUS poll in between.
- POSDATA: h (3×3, Bohr, lattice vectors as *columns*; the ASE cell is hᵀ), h⁻¹, N (int32), positions (N×3 Bohr).
- FORCEREADY reply: energy (Hartree), N, forces (N×3, Hartree/Bohr), virial (3×3 Hartree, = −V·σ, sent
  transposed), then a length-prefixed "extras" string. We send JSON: "dipole" (3,) in e·Bohr, "BEC" (3N, 3) in e
  with row 3i+β (displacement of atom i along β) and column α (dipole component) — exactly what
  ``<motion mode="driven_dynamics">`` reads —, and "charges" (N,) in e. i-PI never converts extras units.
- On a normal end i-PI sends EXIT; a killed i-PI leaves an EOF and, for unix sockets, a stale /tmp/ipi_<name>.

The unit conversion lives once, in :class:`IPIDriver`; the socket loop (:class:`IPIClient`) and the i-PI PES
plugin ``drivers/les.py`` (``i-pi-py_driver -m custom`` and ``<ffdirect>``) both use it. The framing is ours
too (ASE's ``SocketClient`` sends no extras and treats a dropped connection as a normal exit, and its
``IPIProtocol`` reads each field with its own ``recv``): one ``recv_into`` a reused buffer takes whatever i-PI
wrote (i-PI 3.x writes POSDATA and GETFORCE in one go), and the reply leaves in one ``sendall`` from a reused
buffer, so a step costs two receives and two sends (POSDATA+GETFORCE → FORCEREADY, STATUS → READY).
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from lesmd.properties import IPI_EXTRAS
from lesmd.units import BOHR, DIPOLE_EA_TO_AU, HARTREE

#: prefix of i-PI's unix-domain socket files
UNIX_PREFIX = "/tmp/ipi_"
#: extras a client can send
EXTRAS = tuple(IPI_EXTRAS)  # ("charges", "dipole", "BEC"): lesmd.properties
DEFAULT_EXTRAS = ("dipole", "charges")
DEFAULT_PORT = 31415
#: results of the constant-potential electrode potential forwarded to i-PI by `lesmd serve --electrode`
ELECTRODE_EXTRAS = ("electrode_total_charges", "electrode_potentials")


def parse_extras(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"dipole,BEC"`` (or ``;``/space separated, or a sequence) → a tuple of known extras names; ``None``, ``""``
    and ``"none"`` → no extras."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "none"):
        return ()
    items = text.replace(";", ",").replace(" ", ",").split(",") if isinstance(text, str) else list(text)
    names = tuple(s.strip() for s in items if s.strip())
    lower = {e.lower(): e for e in EXTRAS}
    out = []
    for name in names:
        if name.lower() not in lower:
            raise ValueError(f"unknown extras {name!r}; known: {', '.join(EXTRAS)}")
        out.append(lower[name.lower()])
    return tuple(dict.fromkeys(out))


def parse_vector(text: str | Sequence[float] | None) -> np.ndarray | None:
    """``"Ex,Ey,Ez"`` → (3,) field in V/Å (:func:`lesmd.fields.parse_field_vector`); None or "" stays None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    from lesmd.fields import parse_field_vector

    return parse_field_vector(text)


class IPIDriver:
    """Evaluate structures handed over by i-PI (atomic units) with any lesmd potential.

    Args:
        potential: object with ``compute(numbers, positions, cell, pbc, properties) -> dict`` (eV, Å, e).
        numbers: (N,) atomic numbers in i-PI's atom order (i-PI sends positions only).
        pbc: treat the structure as 3-D periodic (i-PI always has a cell; False ignores it: open boundaries).
        extras: names from :data:`EXTRAS` to send in the JSON extras string; only these are computed (an empty
            selection sends no extras at all and spares i-PI the JSON parsing).
        extra_results: further result names of the potential sent as-is in the extras (e.g. the electrode's
            "electrode_total_charges"), taken from ``potential.last_results`` if it has one, else from the results.
        stress: compute the virial (default: when periodic); False sends a zero virial (no NPT).

    Numbers in the extras carry the precision of the evaluation: 9 significant digits (every float32 survives) when
    the potential evaluates in float32, 17 (every float64 survives) otherwise.
    """

    def __init__(self, potential, numbers: Sequence[int], *, pbc: bool = True,
                 extras: Sequence[str] = DEFAULT_EXTRAS, extra_results: Sequence[str] = (),
                 stress: bool | None = None, template_positions: np.ndarray | None = None) -> None:
        self.potential = potential
        self.numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        self.template_positions = None if template_positions is None else \
            np.asarray(template_positions, dtype=np.float64).reshape(-1, 3)
        self.pbc = np.array([bool(pbc)] * 3)
        self.extras = parse_extras(extras)
        self.extra_results = tuple(extra_results)
        props = ["energy", "forces"]
        if self.pbc.all() and stress is not False:
            props.append("stress")
        props += [IPI_EXTRAS[name] for name in self.extras]
        self.properties = tuple(props)
        self.digits = 9 if str(getattr(potential, "dtype", "")) == "torch.float32" else 17
        self.calls = 0
        self._zero_cell = np.zeros((3, 3))

    def compute_structure(self, cell: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, str]:
        """One structure in i-PI units → (energy Ha, forces (N,3) Ha/Bohr, virial (3,3) Ha as sent, extras JSON).

        Args:
            cell: h (3, 3) in Bohr, lattice vectors as columns.
            pos: positions (N, 3) or (3N,) in Bohr.
        """
        pos_ase, cell_ase = self._to_ase(cell, pos)
        out = self.potential.compute(self.numbers, pos_ase, cell_ase, self.pbc, self.properties)
        self.calls += 1
        return self._pack(out, cell_ase)

    def _to_ase(self, cell: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """i-PI's (h Bohr, positions Bohr) → (positions Å, ASE cell Å), checked against the template (atom count;
        on the first structure also the atom order)."""
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        if len(pos) != len(self.numbers):
            raise ValueError(f"i-PI sent {len(pos)} atoms but the template structure has {len(self.numbers)}")
        cell_ase = np.asarray(cell, dtype=np.float64).reshape(3, 3).T * BOHR if self.pbc[0] else self._zero_cell
        if self.calls == 0 and self.template_positions is not None:
            check_atom_order(self.numbers, self.template_positions, pos * BOHR, cell_ase, self.pbc)
        return pos * BOHR, cell_ase

    def compute_batch(self, cells: Sequence[np.ndarray], positions: Sequence[np.ndarray]) -> list[tuple]:
        """:meth:`compute_structure` for B structures in one model call (the potential's ``compute_batch`` when
        it has one, else one by one): i-PI's batched PES interface (lists of cells and positions, atomic units)."""
        batch = getattr(self.potential, "compute_batch", None)
        if batch is None:
            return [self.compute_structure(c, p) for c, p in zip(cells, positions, strict=True)]
        structures = []
        for cell, pos in zip(cells, positions, strict=True):
            pos_ase, cell_ase = self._to_ase(cell, pos)
            structures.append((self.numbers, pos_ase, cell_ase, self.pbc))
        outs = batch(structures, self.properties)
        self.calls += len(outs)
        return [self._pack(out, s[2]) for out, s in zip(outs, structures, strict=True)]

    def _pack(self, out: dict[str, np.ndarray], cell_ase: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, str]:
        energy = float(out["energy"]) / HARTREE
        forces = np.asarray(out["forces"], dtype=np.float64).reshape(-1, 3) * (BOHR / HARTREE)
        if not (math.isfinite(energy) and np.isfinite(forces).all()):
            raise ValueError("the model returned NaN or inf energy/forces for the structure i-PI sent")
        if "stress" in out:
            virial = (-_volume(cell_ase) / HARTREE) * np.asarray(out["stress"], dtype=np.float64).reshape(3, 3).T
        else:
            virial = np.zeros((3, 3))
        return energy, forces, virial, self.extras_json(out)

    def extras_json(self, out: dict[str, np.ndarray]) -> str:
        """The extras JSON string (dipole e·Bohr, BEC (3N,3) e rows 3i+β columns α, charges e); "" if none."""
        items = []
        if "dipole" in self.extras:
            items.append(("dipole", np.asarray(out["dipole"]).reshape(3) * DIPOLE_EA_TO_AU))
        if "BEC" in self.extras:
            bec = np.asarray(out["born_effective_charges"]).reshape(-1, 3, 3)  # [i, α, β]
            items.append(("BEC", bec.transpose(0, 2, 1).reshape(-1, 3)))  # row 3i+β, column α
        if "charges" in self.extras:
            items.append(("charges", np.asarray(out["charges"]).reshape(-1)))
        if self.extra_results:
            source = getattr(self.potential, "last_results", None) or out
            items += [(key, np.asarray(source[key])) for key in self.extra_results]
        if not items:
            return ""
        return "{" + ", ".join(f'"{key}": {json_numbers(value, self.digits)}' for key, value in items) + "}"


def json_numbers(values: np.ndarray, digits: int = 17) -> str:
    """A finite float array (any shape) as a JSON number or (nested) list with ``digits`` significant digits.

    ``"%.17g"`` reproduces every float64 exactly and ``"%.9g"`` every float32; one C-level ``%`` formatting is
    several times faster than ``json.dumps`` (shortest round-trip repr) for the few hundred numbers of a step.
    """
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the model returned NaN or inf in the extras for the structure i-PI sent")
    number = f"%.{digits}g"
    if values.ndim == 0:
        return number % float(values)
    if values.ndim > 2:
        return json.dumps(values.tolist())
    if values.ndim == 1:
        return "[" + ", ".join([number] * values.size) % tuple(values.tolist()) + "]"
    row = "[" + ", ".join([number] * values.shape[1]) + "]"
    return "[" + ", ".join([row] * values.shape[0]) % tuple(values.reshape(-1).tolist()) + "]"


def _volume(cell: np.ndarray) -> float:
    """|det cell| (Å³) of a 3×3 cell, without numpy's general determinant (this runs every step)."""
    (a, b, c), (d, e, f), (g, h, i) = cell.tolist()
    return abs(a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g))


HDRLEN = 12  #: bytes of an i-PI message header


def _header(name: str) -> bytes:
    return name.ljust(HDRLEN).encode("ascii")


_STATUS, _INIT, _POSDATA, _GETFORCE, _EXIT = map(_header, ("STATUS", "INIT", "POSDATA", "GETFORCE", "EXIT"))
_NEEDINIT, _READY, _HAVEDATA, _FORCEREADY = map(_header, ("NEEDINIT", "READY", "HAVEDATA", "FORCEREADY"))
_CELL_BYTES = 2 * 9 * 8 + 4  # h, h⁻¹ (3×3 float64 each) and the atom count (int32) that open POSDATA


class _SocketEOF(ConnectionError):
    """i-PI closed the socket."""


class _Inbox:
    """Buffered reader of i-PI's messages: each ``recv_into`` a reused buffer takes all that has arrived (i-PI
    writes POSDATA and GETFORCE together), so a step needs one receive instead of one per field."""

    def __init__(self, sock: socket.socket, size: int = 1 << 16) -> None:
        self.sock = sock
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def take(self, n: int) -> memoryview:
        """The next ``n`` bytes (valid until the next call)."""
        if self.end - self.start < n:
            self._fill(n)
        out = self.view[self.start:self.start + n]
        self.start += n
        return out

    def pending(self) -> bytes:
        """What has been received but not taken yet."""
        return bytes(self.view[self.start:self.end])

    def _fill(self, n: int) -> None:
        if self.start + n > len(self.buf):  # move the unread tail to the front (grow the buffer if needed)
            tail = self.pending()
            if n > len(self.buf):
                self.buf = bytearray(max(n, 2 * len(self.buf)))
                self.view = memoryview(self.buf)
            self.view[:len(tail)] = tail
            self.start, self.end = 0, len(tail)
        while self.end - self.start < n:
            got = self.sock.recv_into(self.view[self.end:])
            if got == 0:
                raise _SocketEOF("i-PI closed the connection")
            self.end += got


class _Outbox:
    """The FORCEREADY reply of ``nat`` atoms, packed into a reused buffer and sent with one ``sendall``."""

    def __init__(self, nat: int) -> None:
        self.nat = nat
        self.buf = bytearray(HDRLEN + 8 + 4 + 24 * nat + 72 + 4)
        self.buf[:HDRLEN] = _FORCEREADY
        self.energy = np.frombuffer(self.buf, np.float64, 1, HDRLEN)
        np.frombuffer(self.buf, np.int32, 1, HDRLEN + 8)[0] = nat
        self.forces = np.frombuffer(self.buf, np.float64, 3 * nat, HDRLEN + 12)
        self.virial = np.frombuffer(self.buf, np.float64, 9, HDRLEN + 12 + 24 * nat)
        self.extras_len = np.frombuffer(self.buf, np.int32, 1, HDRLEN + 12 + 24 * nat + 72)

    def pack(self, energy: float, forces: np.ndarray, virial: np.ndarray, extras: str) -> bytes:
        """The whole reply as bytes (energy Ha, forces (nat, 3) Ha/Bohr, virial (3, 3) Ha, extras string)."""
        forces = np.asarray(forces, dtype=np.float64).reshape(-1)
        if forces.size != 3 * self.nat:
            raise ValueError(f"driver returned {forces.size // 3} forces for {self.nat} atoms")
        payload = extras.encode("utf-8")
        self.energy[0] = energy
        self.forces[:] = forces
        self.virial[:] = np.asarray(virial, dtype=np.float64).reshape(9)
        self.extras_len[0] = len(payload)
        return self.buf + payload


def _exit_pending(sock: socket.socket, inbox: _Inbox | None = None) -> bool:
    """Whether an EXIT header is already received or waiting in ``sock``'s receive buffer (i-PI sends EXIT, then
    closes: a reply we were still sending can fail with a reset although the run ended normally)."""
    if inbox is not None and b"EXIT" in inbox.pending():
        return True
    try:
        sock.settimeout(0.5)
        data = sock.recv(4096, socket.MSG_PEEK)
    except OSError:
        return False
    return b"EXIT" in data


def _set_blocking_timeout(sock: socket.socket, timeout: float | None) -> None:
    """Make ``sock`` blocking with a kernel receive/send timeout (SO_RCVTIMEO/SO_SNDTIMEO).

    Python's own ``settimeout`` polls before every receive and send (a second system call each time); a blocking
    socket with a kernel timeout waits in the receive itself, and an expired wait raises ``BlockingIOError``,
    which the client reports as a timeout.
    """
    sock.settimeout(None)
    if timeout is not None:
        seconds = int(timeout)
        micro = max(int(round((timeout - seconds) * 1e6)), 0 if seconds else 1)  # (0, 0) would mean "never"
        value = struct.pack("ll", seconds, micro)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class IPIConnectionLost(ConnectionError):
    """The socket to i-PI broke without an EXIT message."""


#: seconds: longest wait between reconnection attempts, and shortest interval between two log lines about them
MAX_BACKOFF = 5.0
LOG_INTERVAL = 5.0


class IPIClient:
    """Socket client of an i-PI server: answers STATUS/INIT/POSDATA/GETFORCE until EXIT.

    Args:
        driver: an :class:`IPIDriver` (anything with ``compute_structure(cell, pos)``).
        unix: name of a unix-domain socket (/tmp/ipi_<name>); if None, TCP ``host:port`` is used.
        host, port: TCP address of i-PI.
        timeout: seconds to wait for any message from i-PI before giving up (None: forever).
        reconnect: seconds to keep trying to (re)connect when i-PI is not there or the connection breaks
            (0: fail at once).
        log: stream for the few status lines (None: silent).
    """

    def __init__(self, driver, *, unix: str | None = None, host: str = "localhost", port: int = DEFAULT_PORT,
                 timeout: float | None = 600.0, reconnect: float = 0.0, log: TextIO | None = sys.stderr) -> None:
        if unix is not None and ("/" in unix or not unix):
            raise ValueError(f"--unix takes a socket name (i-PI's <address>), not a path: {unix!r}")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be positive (seconds), got {timeout}")
        if reconnect < 0:
            raise ValueError(f"reconnect must be ≥ 0 seconds, got {reconnect}")
        self.driver = driver
        self.unix = unix
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.reconnect = float(reconnect)
        self.log = log
        self.evaluations = 0

    @property
    def address(self) -> str:
        """Human-readable address of the server."""
        return f"{UNIX_PREFIX}{self.unix}" if self.unix is not None else f"{self.host}:{self.port}"

    def _say(self, text: str) -> None:
        if self.log is not None:
            print(f"lesmd serve: {text}", file=self.log, flush=True)

    def _connect_once(self) -> socket.socket:
        if self.unix is not None:
            path = UNIX_PREFIX + self.unix
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(path)
            except FileNotFoundError:
                sock.close()
                raise ConnectionError(f"no i-PI socket {path}: is i-PI running with "
                                      f"<ffsocket mode='unix'><address>{self.unix}</address>?") from None
            except ConnectionRefusedError:
                sock.close()
                raise ConnectionError(f"{path} exists but no i-PI listens on it: a stale socket file left by an "
                                      f"i-PI that did not shut down cleanly; remove it (rm {path}) and restart "
                                      "i-PI") from None
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                sock.connect((self.host, self.port))
            except (ConnectionRefusedError, socket.gaierror, OSError) as err:
                sock.close()
                raise ConnectionError(f"cannot reach i-PI at {self.host}:{self.port} ({err.strerror or err}): "
                                      "is i-PI running with <ffsocket mode='inet'> on this port?") from None
        _set_blocking_timeout(sock, self.timeout)
        return sock

    def connect(self, deadline: float | None = None) -> socket.socket:
        """Connect, retrying until ``deadline`` (monotonic clock; default: ``reconnect`` seconds from now) with
        exponential back-off (0.2 s doubling to :data:`MAX_BACKOFF`); raises ``ConnectionError`` with a one-line
        reason. At most one log line per :data:`LOG_INTERVAL` seconds."""
        deadline = time.monotonic() + self.reconnect if deadline is None else deadline
        delay, last_log = 0.2, -math.inf
        while True:
            try:
                return self._connect_once()
            except ConnectionError as err:
                now = time.monotonic()
                if now >= deadline:
                    raise
                if self.reconnect > 0 and now - last_log >= LOG_INTERVAL:
                    self._say(f"{err}; retrying for another {deadline - now:.0f} s")
                    last_log = now
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(2.0 * delay, MAX_BACKOFF)

    def run(self) -> int:
        """Serve until i-PI sends EXIT (returns 0). Raises ``ConnectionError``/``TimeoutError`` otherwise.

        With ``reconnect`` > 0 a broken connection is retried, but the ``reconnect`` seconds count from the last
        structure evaluated: a server that accepts and closes at once (no work done) exhausts them, with back-off
        between attempts, instead of being reconnected forever."""
        sock = self.connect()
        self._say(f"connected to i-PI at {self.address}")
        outage_start, done, delay, last_log = time.monotonic(), self.evaluations, 0.2, -math.inf
        while True:
            try:
                self.serve(sock)
                self._say(f"i-PI sent EXIT after {self.evaluations} evaluations; bye")
                return 0
            except (IPIConnectionLost, TimeoutError) as err:
                if self.reconnect <= 0:
                    raise
                now = time.monotonic()
                if self.evaluations > done:  # the connection did work: a new outage starts now
                    outage_start, done, delay = now, self.evaluations, 0.2
                deadline = outage_start + self.reconnect
                if now >= deadline:
                    raise ConnectionError(f"{err}; gave up after {self.reconnect:g} s of reconnecting without "
                                          "an evaluation") from None
                if now - last_log >= LOG_INTERVAL:
                    self._say(f"{err}; trying to reconnect for up to {deadline - now:.0f} s more")
                    last_log = now
                time.sleep(min(delay, max(deadline - now, 0.0)))
                delay = min(2.0 * delay, MAX_BACKOFF)
                sock = self.connect(deadline)
                if now - last_log < 1e-9:  # the attempt that was just logged: say how it ended
                    self._say(f"reconnected to i-PI at {self.address}")

    def serve(self, sock: socket.socket) -> None:
        """Answer i-PI's messages on ``sock`` until EXIT; always closes the socket."""
        inbox = _Inbox(sock)
        state = _NEEDINIT
        reply = outbox = None
        try:
            while True:
                msg = inbox.take(HDRLEN)
                if msg == _STATUS:
                    sock.sendall(state)
                elif msg == _POSDATA:
                    head = inbox.take(_CELL_BYTES)
                    h = np.frombuffer(head, np.float64, 9).reshape(3, 3).copy()  # h⁻¹ (next 72 bytes) unused
                    nat = int(np.frombuffer(head, np.int32, 1, 144)[0])
                    if nat <= 0:
                        raise ConnectionError(f"i-PI sent POSDATA with {nat} atoms (protocol error)")
                    expected = getattr(self.driver, "numbers", None)
                    if expected is not None and nat != len(expected):  # before reading (allocating) 24·nat bytes
                        raise ValueError(f"i-PI sent {nat} atoms but the template has {len(expected)}: use the "
                                         "--template of this simulation (same atoms, same order)")
                    pos = np.frombuffer(inbox.take(24 * nat), np.float64).reshape(nat, 3).copy()
                    if not math.isfinite(pos.sum() + h.sum()):  # one NaN/inf anywhere makes the sum NaN/inf
                        raise ValueError("i-PI sent NaN/inf positions or cell")
                    if outbox is None or outbox.nat != nat:
                        outbox = _Outbox(nat)
                    reply = outbox.pack(*self.driver.compute_structure(h, pos))
                    self.evaluations += 1
                    state = _HAVEDATA
                elif msg == _GETFORCE:
                    if reply is None:
                        raise ConnectionError("i-PI asked for forces before sending positions (protocol error)")
                    sock.sendall(reply)
                    reply = None
                    state = _READY
                elif msg == _INIT:
                    nbytes = int(np.frombuffer(inbox.take(8), np.int32)[1])  # bead/replica index, string length
                    text = bytes(inbox.take(nbytes)).decode("utf-8", errors="replace") if nbytes > 0 else ""
                    _check_init_string(text)
                    state = _READY
                elif msg == _EXIT:
                    return
                else:
                    raise ConnectionError(f"unexpected message {bytes(msg)!r} from i-PI (protocol error)")
        except (_SocketEOF, ConnectionResetError, BrokenPipeError) as err:
            if _exit_pending(sock, inbox):
                # i-PI ended the run while we were answering: its EXIT was already queued before the close
                return
            why = f" ({err.strerror})" if getattr(err, "strerror", None) else ""
            raise IPIConnectionLost(f"lost the connection to i-PI at {self.address} without an EXIT message{why}: "
                                    "i-PI was killed or crashed") from None
        except (TimeoutError, BlockingIOError):
            raise TimeoutError(f"no message from i-PI at {self.address} for {self.timeout:g} s "
                               "(hung or too busy? raise --timeout)") from None
        finally:
            try:
                sock.close()
            except OSError:
                pass


def _check_init_string(text: str) -> None:
    for token in text.split(","):
        key, sep, value = token.partition(":")
        if sep and key.strip() == "batch_size" and value.strip() not in ("", "1"):
            raise ValueError(f"i-PI asks for batched evaluation (batch_size={value.strip()}); lesmd serve "
                             "evaluates one structure per message: remove batch_size from <ffsocket>")


def check_atom_order(numbers: np.ndarray, template: np.ndarray, received: np.ndarray, cell: np.ndarray,
                     pbc: np.ndarray, match: float = 0.5) -> None:
    """ValueError when i-PI's first structure is the template's structure with its atoms in another order.

    Each received atom is matched to the nearest template atom (minimum image in periodic cells). When the two
    clearly hold the same structure (≥ 90 % of atoms within ``match`` Å of a template atom) but ≥ 5 % of the
    matched atoms carry another element than the template assigns to their index, the template's order is wrong:
    the run would put O masses and charges on H positions and heat up without a warning. A template taken from
    another frame (positions far apart) is not judged.
    """
    from scipy.spatial import cKDTree

    periodic = bool(np.all(pbc))
    if periodic:
        from lesmd.evaluate import wrap_into_cell

        _, reduced, _ = wrap_into_cell(received, cell, pbc)
        inverse = np.linalg.inv(reduced)
        frac_t = (template @ inverse) % 1.0
        frac_r = (received @ inverse) % 1.0
        tree = cKDTree(frac_t, boxsize=1.0 + 1e-12)
        _, nearest = tree.query(frac_r % 1.0)
        d = frac_r - frac_t[nearest]
        d -= np.round(d)
        distance = np.linalg.norm(d @ reduced, axis=1)
    else:
        distance, nearest = cKDTree(template).query(received)
    close = distance < match
    if close.mean() < 0.9:
        return
    wrong = close & (numbers[nearest] != numbers)
    if wrong.mean() >= 0.05:
        from ase.data import chemical_symbols

        k = int(np.flatnonzero(wrong)[0])
        raise ValueError(
            f"i-PI's atoms are in another order than the template: {int(wrong.sum())} of {len(numbers)} atoms sit "
            f"where the template has another element (atom {k}: template {chemical_symbols[numbers[k]]}, position of "
            f"a {chemical_symbols[numbers[nearest[k]]]}); use the file i-PI initialises from as --template"
        )


def read_template(template: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Atomic numbers and positions (Å) in i-PI's atom order from any ASE-readable structure file (init.xyz)."""
    from ase.io import read

    path = Path(template)
    if not path.is_file():
        raise FileNotFoundError(f"template structure {path} not found")
    try:
        atoms = read(path)
    except Exception as err:  # ASE raises many types for unreadable files
        raise ValueError(f"cannot read template structure {path}: {err}") from None
    if len(atoms) == 0:
        raise ValueError(f"template structure {path} has no atoms")
    return atoms.numbers.copy(), atoms.positions.copy()


def read_numbers(template: str | Path) -> np.ndarray:
    """Atomic numbers (i-PI's atom order) from any ASE-readable structure file, e.g. i-PI's init.xyz."""
    return read_template(template)[0]


def build_potential(model=None, *, charge: float = 0.0, epsilon_inf: float = 1.0, efield=None,
                    electrode: str | Path | None = None, dtype: str | None = None, device: str = "cpu"):
    """The potential an adapter serves: an :class:`~lesmd.potential.LESPotential`, optionally wrapped by the
    constant-potential electrode solver (``lesmd.electrode.potential_from_config(config, base)``)."""
    import torch

    from lesmd.potential import LESPotential

    dtypes = {None: None, "float32": torch.float32, "float64": torch.float64}
    if dtype not in dtypes:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    base = LESPotential(model, total_charge=charge, epsilon_inf=epsilon_inf, efield=parse_vector(efield),
                        dtype=dtypes[dtype], device=device)
    if electrode is None:
        return base
    from lesmd.electrode import potential_from_config

    return potential_from_config(electrode, base)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `lesmd serve`."""
    parser.add_argument("--model", default=None, help="model file (default: the embedded water model)")
    parser.add_argument("--template", required=True,
                        help="structure file (e.g. i-PI's init.xyz) giving the elements in i-PI's atom order")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--unix", metavar="NAME", default=None,
                       help="unix socket name: i-PI's <address> (socket file /tmp/ipi_NAME)")
    where.add_argument("--host", default="localhost", help="i-PI host for an inet socket (default localhost)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"inet port (default {DEFAULT_PORT})")
    parser.add_argument("--extras", default=",".join(DEFAULT_EXTRAS),
                        help="extras sent to i-PI: any of dipole,BEC,charges, or none (default dipole,charges; "
                             "use BEC for driven_dynamics; none is fastest when no extras are needed)")
    parser.add_argument("--efield", default=None, metavar="Ex,Ey,Ez", help="static uniform field, V/Å")
    parser.add_argument("--electrode", default=None, metavar="CONFIG", help="constant-potential electrode config")
    parser.add_argument("--epsilon-inf", type=float, default=1.0, help="ε∞ scaling of charges/dipoles/BECs")
    parser.add_argument("--charge", type=float, default=0.0, help="total charge, e")
    parser.add_argument("--open-boundaries", action="store_true",
                        help="ignore i-PI's cell (molecule in vacuum) instead of 3-D periodic boundaries")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None, help="evaluation precision")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds without any message from i-PI before giving up (default 600)")
    parser.add_argument("--reconnect", type=float, default=0.0, metavar="SECONDS",
                        help="keep trying to (re)connect for this long when i-PI is absent or the socket breaks")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def run_cli(args: argparse.Namespace, potential=None) -> int:
    """`lesmd serve`: connect to i-PI and serve energies, forces, virial and extras until i-PI ends.

    ``potential`` replaces the one built from ``--model``/``--efield``/``--electrode`` (for programmatic use).
    """
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    numbers, template_positions = read_template(args.template)
    if potential is None:
        potential = build_potential(args.model, charge=args.charge, epsilon_inf=args.epsilon_inf,
                                    efield=args.efield, electrode=args.electrode, dtype=args.dtype,
                                    device=args.device)
    check_species = getattr(getattr(potential, "model", None), "check_species", None)
    if check_species is not None:  # the template's elements are checked before connecting
        import torch

        check_species(torch.as_tensor(numbers))
    options = {"stress": False, "extra_results": ELECTRODE_EXTRAS} if args.electrode else {}
    driver = IPIDriver(potential, numbers, pbc=not args.open_boundaries, extras=args.extras,
                       template_positions=template_positions, **options)
    client = IPIClient(driver, unix=args.unix, host=args.host, port=args.port, timeout=args.timeout,
                       reconnect=args.reconnect)
    return client.run()
