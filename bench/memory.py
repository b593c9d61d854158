#!/usr/bin/env python3
"""make bench-memory: peak resident memory of annotate runs that test --max-memory.

Each case runs annotate while sampling /proc every 10 ms: the parent's own peak (VmHWM, what
/usr/bin/time -v reports as "Maximum resident set size") and the largest sum of its worker
processes' proportional set sizes (Pss: shared libraries counted once) at one moment. Cases (the ones issue 23 gives):

  answers    16 requests in flight to a server that streams an endless chunked answer;
             --max-answer-bytes 67108864 (its default), --max-memory 100000000
  load=proc  IMAGES images of 30 MB, --strategy load=processes, --max-memory 100000000
  processes  the same images, --strategy processes, --max-memory 100000000

and each again without a cap (--max-memory 0) for comparison; then 1 kB images under --strategy
processes: what the worker processes hold with no image to speak of. Usage:
  bench/memory.py BUILD [IMAGES]
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ENDLESS = r'''
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(128)
print(s.getsockname()[1], flush=True)
chunk = b'%x\r\n' % 65536 + b'x' * 65536 + b'\r\n'
def h(c):
    try:
        while True:
            d = b''
            while b'\r\n\r\n' not in d:
                x = c.recv(65536)
                if not x: return
                d += x
            head, body = d.split(b'\r\n\r\n', 1)
            n = 0
            for line in head.split(b'\r\n'):
                if line.lower().startswith(b'content-length:'):
                    n = int(line.split(b':')[1])
            while len(body) < n:
                x = c.recv(1 << 20)
                if not x: return
                body += x
            c.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n'
                      b'c\r\n{"result": "\r\n')
            while True:
                c.sendall(chunk)
    except Exception:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=h, args=(c,), daemon=True).start()
'''


def status_kb(pid, field):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    """Proportional set size: shared library pages divided among the processes that map them,
    so that a sum over worker processes counts them once."""
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            for line in f:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def measure(argv, log):
    """Runs argv; returns (exit status, parent peak kB, workers' largest summed RSS kB, seconds)."""
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=log, stderr=log)
    parent = workers = 0
    while p.poll() is None:
        parent = max(parent, status_kb(p.pid, 'VmHWM:'))
        workers = max(workers, sum(pss_kb(c) for c in children(p.pid)))
        time.sleep(0.01)
    return p.returncode, parent, workers, time.time() - t0


def make_images(d, n, size):
    os.makedirs(d, exist_ok=True)
    for k in range(n):
        path = os.path.join(d, 'big-%02d.png' % k)
        if not os.path.exists(path) or os.path.getsize(path) != size:
            with open(path, 'wb') as f:
                f.write(bytes([k]) + os.urandom(size - 1))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else 'build'
    n_images = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    ann = os.path.abspath(os.path.join(build, 'annotate'))
    mock = os.path.abspath(os.path.join(build, 'mock-model-server'))
    data = os.path.abspath('out/bench-memory')
    make_images(os.path.join(data, 'big'), n_images, 30 * 1000 * 1000)
    small = os.path.join(data, 'small')
    make_images(small, 16, 1000)
    tmp = tempfile.mkdtemp(prefix='bench-memory-')
    log = open(os.path.join(tmp, 'log'), 'w')
    srv = subprocess.Popen([sys.executable, '-c', ENDLESS], stdout=subprocess.PIPE, text=True)
    endless = 'http://127.0.0.1:%s' % srv.stdout.readline().strip()
    m = subprocess.Popen([mock, '--port', '0', '--trust-payload'], stdout=subprocess.PIPE, text=True)
    line = m.stdout.readline()
    mock_url = 'http://' + line.split()[-1]
    print('== peak resident memory (kB figures in MB); %d cores, load %s' %
          (os.cpu_count(), open('/proc/loadavg').read().split()[0]))
    print('%-44s %10s %8s %10s %12s %6s' % ('case', 'max-memory', 'exit', 'parent MB', 'workers MB', 's'))
    cases = [
        ('answers: 16 endless chunked answers', small, endless,
         ['--concurrency', '16', '--retries', '0', '--outage-timeout', '0']),
        ('30 MB images, --strategy load=processes', os.path.join(data, 'big'), mock_url,
         ['--strategy', 'load=processes', '--max-image-bytes', '40000000']),
        ('30 MB images, --strategy processes', os.path.join(data, 'big'), mock_url,
         ['--strategy', 'processes', '--max-image-bytes', '40000000']),
        ('1 kB images, --strategy processes (baseline)', small, mock_url, ['--strategy', 'processes']),
    ]
    try:
        for name, root, url, extra in cases:
            for cap in ('100000000', '0'):
                out = os.path.join(tmp, 'out.csv')
                argv = [ann, root, '--out', out, '--server', url, '--force', '--quiet',
                        '--max-memory', cap] + extra
                rc, parent, workers, secs = measure(argv, log)
                print('%-44s %10s %8d %10.0f %12.0f %6.1f' %
                      (name, cap, rc, parent / 1024, workers / 1024, secs), flush=True)
    finally:
        srv.kill()
        m.terminate()
        srv.wait()
        m.wait()
        log.close()


if __name__ == '__main__':
    main()
