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
plugin ``drivers/les.py`` (``i-pi-py_driver -m custom`` and ``<ffdirect>``) both use it. Message framing reuses
ASE's :class:`ase.calculators.socketio.IPIProtocol` (ASE's own ``SocketClient`` loop sends no extras and treats
a dropped connection as a normal exit, so the loop is ours).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from lesmd.units import BOHR, DIPOLE_EA_TO_AU, HARTREE

#: prefix of i-PI's unix-domain socket files
UNIX_PREFIX = "/tmp/ipi_"
#: extras a client can send
EXTRAS = ("dipole", "BEC", "charges")
DEFAULT_EXTRAS = ("dipole", "charges")
DEFAULT_PORT = 31415
#: results of the constant-potential electrode potential forwarded to i-PI by `lesmd serve --electrode`
ELECTRODE_EXTRAS = ("electrode_total_charges", "electrode_potentials")


def parse_extras(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"dipole,BEC"`` (or ``;``/space separated, or a sequence) → a tuple of known extras names."""
    if text is None:
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
        extras: names from :data:`EXTRAS` to send in the JSON extras string.
        extra_results: further result names of the potential sent as-is in the extras (e.g. the electrode's
            "electrode_total_charges"), taken from ``potential.last_results`` if it has one, else from the results.
        stress: compute the virial (default: when periodic); False sends a zero virial (no NPT).
    """

    def __init__(self, potential, numbers: Sequence[int], *, pbc: bool = True,
                 extras: Sequence[str] = DEFAULT_EXTRAS, extra_results: Sequence[str] = (),
                 stress: bool | None = None) -> None:
        self.potential = potential
        self.numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        self.pbc = np.array([bool(pbc)] * 3)
        self.extras = parse_extras(extras)
        self.extra_results = tuple(extra_results)
        props = ["energy", "forces", "charges", "dipole"]
        if self.pbc.all() and stress is not False:
            props.append("stress")
        if "BEC" in self.extras:
            props.append("born_effective_charges")
        self.properties = tuple(props)
        self.calls = 0

    def compute_structure(self, cell: np.ndarray, pos: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, str]:
        """One structure in i-PI units → (energy Ha, forces (N,3) Ha/Bohr, virial (3,3) Ha as sent, extras JSON).

        Args:
            cell: h (3, 3) in Bohr, lattice vectors as columns.
            pos: positions (N, 3) or (3N,) in Bohr.
        """
        pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
        if len(pos) != len(self.numbers):
            raise ValueError(f"i-PI sent {len(pos)} atoms but the template structure has {len(self.numbers)}")
        cell_ase = np.asarray(cell, dtype=np.float64).reshape(3, 3).T * BOHR
        positions = pos * BOHR
        if not self.pbc.all():
            cell_ase = np.zeros((3, 3))
        out = self.potential.compute(self.numbers, positions, cell_ase, self.pbc, self.properties)
        self.calls += 1
        energy = float(out["energy"]) / HARTREE
        forces = np.ascontiguousarray(out["forces"], dtype=np.float64).reshape(-1, 3) * (BOHR / HARTREE)
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise ValueError("the model returned NaN or inf energy/forces for the structure i-PI sent")
        if "stress" in out:
            volume = abs(np.linalg.det(cell_ase))
            virial = np.ascontiguousarray((-volume * np.asarray(out["stress"]).reshape(3, 3) / HARTREE).T)
        else:
            virial = np.zeros((3, 3))
        return energy, forces, virial, self.extras_json(out)

    def extras_json(self, out: dict[str, np.ndarray]) -> str:
        """The extras JSON string (dipole e·Bohr, BEC (3N,3) e rows 3i+β columns α, charges e)."""
        data = {}
        if "dipole" in self.extras:
            data["dipole"] = (np.asarray(out["dipole"]).reshape(3) * DIPOLE_EA_TO_AU).tolist()
        if "BEC" in self.extras:
            bec = np.asarray(out["born_effective_charges"]).reshape(-1, 3, 3)  # [i, α, β]
            data["BEC"] = bec.transpose(0, 2, 1).reshape(-1, 3).tolist()  # row 3i+β, column α
        if "charges" in self.extras:
            data["charges"] = np.asarray(out["charges"]).reshape(-1).tolist()
        if self.extra_results:
            source = getattr(self.potential, "last_results", None) or out
            for key in self.extra_results:
                data[key] = np.asarray(source[key]).tolist()
        return json.dumps(data)


def _exit_pending(sock: socket.socket) -> bool:
    """Whether an EXIT header is waiting in ``sock``'s receive buffer (i-PI sends EXIT, then closes: a reply we
    were still sending can fail with a reset although the run ended normally)."""
    try:
        sock.settimeout(0.5)
        data = sock.recv(4096, socket.MSG_PEEK)
    except OSError:
        return False
    return b"EXIT" in data


class IPIConnectionLost(ConnectionError):
    """The socket to i-PI broke without an EXIT message."""


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
        sock.settimeout(self.timeout)
        return sock

    def connect(self) -> socket.socket:
        """Connect, retrying for ``reconnect`` seconds; raises ``ConnectionError`` with a one-line reason."""
        deadline = time.monotonic() + self.reconnect
        while True:
            try:
                return self._connect_once()
            except ConnectionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.0)))

    def run(self) -> int:
        """Serve until i-PI sends EXIT (returns 0). Raises ``ConnectionError``/``TimeoutError`` otherwise."""
        sock = self.connect()
        self._say(f"connected to i-PI at {self.address}")
        while True:
            try:
                self.serve(sock)
                self._say(f"i-PI sent EXIT after {self.evaluations} evaluations; bye")
                return 0
            except (IPIConnectionLost, TimeoutError) as err:
                if self.reconnect <= 0:
                    raise
                self._say(f"{err}; trying to reconnect for {self.reconnect:g} s")
                sock = self.connect()
                self._say(f"reconnected to i-PI at {self.address}")

    def serve(self, sock: socket.socket) -> None:
        """Answer i-PI's messages on ``sock`` until EXIT; always closes the socket."""
        from ase.calculators.socketio import IPIProtocol, SocketClosed

        proto = IPIProtocol(sock)
        state = "NEEDINIT"
        result = None
        nat = 0
        try:
            while True:
                msg = proto.recvmsg()
                if msg == "STATUS":
                    proto.sendmsg(state)
                elif msg == "INIT":
                    proto.recv(1, np.int32)  # bead/replica index
                    nbytes = int(proto.recv(1, np.int32)[0])
                    text = proto._recvall(nbytes).decode("utf-8", errors="replace") if nbytes > 0 else ""
                    _check_init_string(text)
                    state = "READY"
                elif msg == "POSDATA":
                    h = proto.recv((3, 3), np.float64)
                    proto.recv((3, 3), np.float64)  # h⁻¹, unused
                    nat = int(proto.recv(1, np.int32)[0])
                    pos = proto.recv((nat, 3), np.float64)
                    result = self.driver.compute_structure(h, pos)
                    self.evaluations += 1
                    state = "HAVEDATA"
                elif msg == "GETFORCE":
                    if result is None:
                        raise ConnectionError("i-PI asked for forces before sending positions (protocol error)")
                    self._send_forces(sock, nat, *result)
                    result = None
                    state = "READY"
                elif msg == "EXIT":
                    return
                else:
                    raise ConnectionError(f"unexpected message {msg!r} from i-PI (protocol error)")
        except (SocketClosed, ConnectionResetError, BrokenPipeError) as err:
            if _exit_pending(sock):
                # i-PI ended the run while we were answering: its EXIT was already queued before the close
                return
            why = f" ({err.strerror})" if getattr(err, "strerror", None) else ""
            raise IPIConnectionLost(f"lost the connection to i-PI at {self.address} without an EXIT message{why}: "
                                    "i-PI was killed or crashed") from None
        except TimeoutError:
            raise TimeoutError(f"no message from i-PI at {self.address} for {self.timeout:g} s "
                               "(hung or too busy? raise --timeout)") from None
        except AssertionError:
            raise ValueError("i-PI sent NaN/inf positions or cell") from None
        finally:
            try:
                sock.close()
            except OSError:
                pass

    @staticmethod
    def _send_forces(sock: socket.socket, nat: int, energy: float, forces: np.ndarray, virial: np.ndarray,
                     extras: str) -> None:
        payload = extras.encode("utf-8") or b" "
        forces = np.ascontiguousarray(forces, dtype=np.float64).reshape(-1)
        if forces.size != 3 * nat:
            raise ValueError(f"driver returned {forces.size // 3} forces for {nat} atoms")
        sock.sendall(b"".join([
            b"FORCEREADY  ",
            np.float64(energy).tobytes(),
            np.int32(nat).tobytes(),
            forces.tobytes(),
            np.ascontiguousarray(virial, dtype=np.float64).reshape(9).tobytes(),
            np.int32(len(payload)).tobytes(),
            payload,
        ]))


def _check_init_string(text: str) -> None:
    for token in text.split(","):
        key, sep, value = token.partition(":")
        if sep and key.strip() == "batch_size" and value.strip() not in ("", "1"):
            raise ValueError(f"i-PI asks for batched evaluation (batch_size={value.strip()}); lesmd serve "
                             "evaluates one structure per message: remove batch_size from <ffsocket>")


def read_numbers(template: str | Path) -> np.ndarray:
    """Atomic numbers (i-PI's atom order) from any ASE-readable structure file, e.g. i-PI's init.xyz."""
    from ase.io import read

    path = Path(template)
    if not path.is_file():
        raise FileNotFoundError(f"template structure {path} not found")
    try:
        atoms = read(path)
    except Exception as err:  # ASE raises many types for unreadable files
        raise ValueError(f"cannot read template structure {path}: {err}") from None
    return atoms.numbers.copy()


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
                        help="extras sent to i-PI: any of dipole,BEC,charges (default dipole,charges; "
                             "use BEC for driven_dynamics)")
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
    numbers = read_numbers(args.template)
    if potential is None:
        potential = build_potential(args.model, charge=args.charge, epsilon_inf=args.epsilon_inf,
                                    efield=args.efield, electrode=args.electrode, dtype=args.dtype,
                                    device=args.device)
    if args.electrode:  # electrode cells: no virial; per-electrode totals and potentials in the extras
        driver = IPIDriver(potential, numbers, pbc=not args.open_boundaries, extras=args.extras, stress=False,
                           extra_results=ELECTRODE_EXTRAS)
    else:
        driver = IPIDriver(potential, numbers, pbc=not args.open_boundaries, extras=args.extras)
    client = IPIClient(driver, unix=args.unix, host=args.host, port=args.port, timeout=args.timeout,
                       reconnect=args.reconnect)
    return client.run()
