"""A raw RTMP client for hostile tests: it can do what no real publisher does (send media without a
``publish``, stall mid-handshake, trickle bytes), and reads the server's replies with its own small
parser, independent of the server's chunk reader. Real publishing in tests is done by the ffmpeg CLI."""

from __future__ import annotations

import os
import socket
import struct
import time

from sidecast.core.push import amf0


class RawRtmp:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.in_chunk = 128
        self._buf = b""
        self._streams: dict[int, tuple[int, int, int, bytes]] = {}   # csid -> (len, type, msid, partial)

    def close(self) -> None:
        self.sock.close()

    def handshake(self) -> None:
        self.sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))
        s = self._read_exact(1 + 1536 + 1536)
        assert s[0] == 3, s[:1]
        self.sock.sendall(s[1:1 + 1536])  # C2 echoes S1

    def send(self, msg_type: int, payload: bytes, *, msid: int = 0, csid: int = 3, ts: int = 0) -> None:
        out = bytearray([csid]) + ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([msg_type])
        out += msid.to_bytes(4, "little")
        for i in range(0, max(len(payload), 1), 128):
            if i:
                out.append(0xC0 | csid)
            out += payload[i:i + 128]
        self.sock.sendall(bytes(out))

    def command(self, *values: amf0.AmfValue, msid: int = 0) -> None:
        self.send(20, amf0.encode(*values), msid=msid, csid=3 if not msid else 8)

    def connect(self, app: str = "live") -> None:
        self.command("connect", 1.0, {"app": app, "type": "nonprivate", "tcUrl": f"rtmp://127.0.0.1/{app}"})
        self.wait_command("_result")

    def create_stream(self) -> int:
        self.command("createStream", 2.0, None)
        values = self.wait_command("_result")
        return int(values[3])  # type: ignore[arg-type]

    def publish(self, name: str, msid: int = 1) -> dict[str, amf0.AmfValue]:
        """Send publish and return the onStatus info object the server answered."""
        self.command("publish", 3.0, None, name, "live", msid=msid)
        values = self.wait_command("onStatus")
        info = values[3]
        assert isinstance(info, dict)
        return info

    def wait_command(self, name: str, timeout: float = 5.0) -> list[amf0.AmfValue]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mtype, payload = self.read_message()
            if mtype == 20:
                values = amf0.decode(payload)
                if values and values[0] == name:
                    return values
        raise AssertionError(f"no {name} from the server")

    def read_message(self) -> tuple[int, bytes]:
        while True:
            b0 = self._read_exact(1)[0]
            fmt, csid = b0 >> 6, b0 & 0x3F
            assert csid >= 2, "this reader handles one-byte basic headers (all the server sends)"
            if fmt == 0:
                h = self._read_exact(11)
                length, mtype, msid = int.from_bytes(h[3:6], "big"), h[6], int.from_bytes(h[7:11], "little")
                partial = b""
            else:
                assert fmt == 3, f"server sent chunk format {fmt}"
                length, mtype, msid, partial = self._streams[csid]
            take = min(self.in_chunk, length - len(partial))
            partial += self._read_exact(take)
            if len(partial) < length:
                self._streams[csid] = (length, mtype, msid, partial)
                continue
            self._streams.pop(csid, None)
            if mtype == 1:
                self.in_chunk = struct.unpack(">I", partial[:4])[0]
            return mtype, partial

    def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._buf += data
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True when the server ends the connection within ``timeout`` (whatever it sent before)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def video_payload(keyframe: bool = True) -> bytes:
    """An FLV video tag body (AVC NALU packet) with junk picture data: enough for a server to see media."""
    return bytes([0x17 if keyframe else 0x27, 0x01, 0, 0, 0]) + os.urandom(200)
