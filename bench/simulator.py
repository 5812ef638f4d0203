"""Benchmark of the EWS simulator (a script, no assertions): prints the figures the README quotes.

    python bench/simulator.py [--mailboxes 1000] [--folders 5] [--streams 200] [--clients 8] [--seconds 5]

The simulator runs in a child process (as in a real benchmark of the watcher), the load comes from this one
over loopback HTTP/1.1 keep-alive connections with pre-built SOAP requests, so client cost stays small.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import multiprocessing as mp
import re
import resource
import selectors
import socket
import statistics
import threading
import time
from urllib.parse import urlparse

SOAP = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header><s:Body>{}</s:Body></s:Envelope>'
)
SYNC = (
    "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
    '<m:SyncFolderId><t:DistinguishedFolderId Id="inbox"/></m:SyncFolderId>{state}'
    "<m:MaxChangesReturned>512</m:MaxChangesReturned></m:SyncFolderItems>"
)
SUBSCRIBE = (
    '<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="inbox"/>'
    "</t:FolderIds><t:EventTypes><t:EventType>NewMailEvent</t:EventType></t:EventTypes>"
    "</m:StreamingSubscriptionRequest></m:Subscribe>"
)
STREAM = (
    "<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{}</t:SubscriptionId></m:SubscriptionIds>"
    "<m:ConnectionTimeout>30</m:ConnectionTimeout></m:GetStreamingEvents>"
)


def address(n: int) -> str:
    return f"user{n:05d}@bench.example"


def auth(n: int) -> str:
    return "Basic " + base64.b64encode(f"{address(n)}:pw".encode()).decode()


def serve(conn, mailboxes: int, folders: int) -> None:
    """Child process: build the mailboxes, start the simulator, obey 'deliver N' / 'stop' commands."""
    from foldertrack.simulator import MailSpec, Simulator

    sim = Simulator(port=0)
    started = time.perf_counter()
    for n in range(mailboxes):
        mb = sim.add_mailbox(address(n), password="pw")
        for f in range(folders):
            mb.create_folder(f"Inbox/Customers/Customer {f}")
        sim.deliver(address(n), MailSpec(subject="seed", to=[address(n)]))
    setup = time.perf_counter() - started
    sim.start()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    conn.send((sim.url, setup, rss))
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            break
        _kind, first, count = cmd
        for n in range(first, first + count):
            sim.deliver(address(n), MailSpec(subject="bench", to=[address(n)]))
        conn.send(("delivered", time.perf_counter(), sim.stats.snapshot()["open_streams"]))
    sim.stop()
    conn.send(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def post(http_conn: http.client.HTTPConnection, path: str, n: int, body: str) -> bytes:
    http_conn.request("POST", path, body.encode(), {"Authorization": auth(n), "Content-Type": "text/xml"})
    return http_conn.getresponse().read()


def sync_load(url: str, clients: int, seconds: float, mailboxes: int) -> tuple[int, list[float]]:
    parsed = urlparse(url)
    done = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        n = k % mailboxes
        state = ""
        count = 0
        mine = []
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            body = post(conn, parsed.path, n, SOAP.format(SYNC.format(state=state)))
            mine.append(time.perf_counter() - t0)
            found = re.search(rb"<m:SyncState>([^<]*)</m:SyncState>", body)
            state = f"<m:SyncState>{found.group(1).decode()}</m:SyncState>" if found else ""
            count += 1
        with lock:
            done.append(count)
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done), latencies


def open_streams(url: str, streams: int) -> list[socket.socket]:
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    sockets = []
    for n in range(streams):
        body = post(conn, parsed.path, n, SOAP.format(SUBSCRIBE))
        sub_id = re.search(rb"<m:SubscriptionId>([^<]*)</m:SubscriptionId>", body).group(1).decode()
        payload = SOAP.format(STREAM.format(sub_id)).encode()
        sock = socket.create_connection((parsed.hostname, parsed.port))
        sock.sendall(
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.hostname}\r\nAuthorization: {auth(n)}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        sockets.append(sock)
    return sockets


def await_events(sockets: list[socket.socket], timeout: float) -> dict[int, float]:
    """Wait until every stream got a chunk with a NewMailEvent; return the arrival time per stream."""
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, i)
    arrived: dict[int, float] = {}
    buffers: dict[int, bytes] = {}
    deadline = time.perf_counter() + timeout
    while len(arrived) < len(sockets) and time.perf_counter() < deadline:
        for key, _ in selector.select(0.5):
            i = key.data
            buffers[i] = buffers.get(i, b"") + key.fileobj.recv(65536)
            if b"NewMailEvent" in buffers[i] and i not in arrived:
                arrived[i] = time.perf_counter()
    selector.close()
    return arrived


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--folders", type=int, default=5)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=serve, args=(child, args.mailboxes, args.folders))
    proc.start()
    url, setup, rss = parent.recv()
    print(
        f"setup: {args.mailboxes} mailboxes x {args.folders} folders (+1 mail each) "
        f"in {setup:.2f} s, RSS {rss:.0f} MB"
    )

    started = time.perf_counter()
    sockets = open_streams(url, args.streams)
    print(
        f"streams: {len(sockets)} GetStreamingEvents connections open "
        f"in {time.perf_counter() - started:.2f} s"
    )

    parent.send(("deliver", 0, args.streams))
    _, delivered_at, open_count = parent.recv()
    arrived = await_events(sockets, timeout=30)
    lags = sorted(t - delivered_at for t in arrived.values())
    if lags:
        print(
            f"notify: {len(arrived)}/{len(sockets)} streams got their NewMailEvent "
            f"(server saw {open_count} open); "
            f"lag after delivery p50 {statistics.median(lags) * 1000:.1f} ms, max {lags[-1] * 1000:.1f} ms"
        )

    total, latencies = sync_load(url, args.clients, args.seconds, args.mailboxes)
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"sync: {total / args.seconds:.0f} SyncFolderItems/s with {args.clients} keep-alive clients "
        f"while {len(sockets)} streams stay open (p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    )
    for sock in sockets:
        sock.close()
    parent.send("stop")
    rss = parent.recv()
    proc.join(10)
    print(f"server peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
