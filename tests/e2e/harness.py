"""End-to-end harness: runs a real broker, actor node and HTTP edge on loopback.

    with Cluster() as c:            # or: c = start_cluster(self) inside a TestCase
        requests.get(c.base_url + "/healthz")
        c.kill("node"); c.start("node"); c.wait_ready()

Every process gets a fresh temporary data dir, ephemeral ports, and its stdout/stderr captured to
files under the temp dir. Readiness is polled (endpoint file, port file, GET /readyz == 200),
never slept for. Teardown always runs: SIGTERM, then SIGKILL after a grace period.

Environment:
    MERCATO_BIN                 directory holding mercato-broker/-node/-edge
                                (default /work/main/build/bin)
    MERCATO_E2E_START_TIMEOUT   seconds to wait for the whole system to be ready (default 20)
    MERCATO_E2E_KEEP            keep the temp dir after the run (it is kept anyway on failure)
    MERCATO_E2E_ADMIN_TOKEN     bearer token sent on catalog writes (CONTRACT 4: writes are admin)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import requests

BIN_DIR = os.environ.get("MERCATO_BIN") or "/work/main/build/bin"
START_TIMEOUT = float(os.environ.get("MERCATO_E2E_START_TIMEOUT", "20"))
TERM_GRACE = 5.0
API = "/api/v1"
SETPRIV = shutil.which("setpriv")


class HarnessError(RuntimeError):
    pass


def wait_for(cond, timeout, interval=0.02, what="condition"):
    """Poll cond() until it returns a truthy value; return that value or raise on timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - a failing probe just means "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            raise HarnessError("timed out after %.1fs waiting for %s%s" % (
                timeout, what, " (last error: %r)" % (last_exc,) if last_exc else ""))
        time.sleep(interval)


def _tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "<no file>"
    text = data.decode("utf-8", "replace").splitlines()
    return "\n".join(text[-lines:])


class Proc:
    """One managed process: argv is rebuilt on every start (endpoints may change)."""

    def __init__(self, name, logdir):
        self.name = name
        self.logdir = logdir
        self.popen = None
        self.starts = 0
        self.out_path = os.path.join(logdir, name + ".out")
        self.err_path = os.path.join(logdir, name + ".err")

    def start(self, argv, env):
        assert not self.alive(), "%s already running" % self.name
        self.starts += 1
        # Append so the logs of a killed incarnation survive its restart.
        out = open(self.out_path, "ab")
        err = open(self.err_path, "ab")
        banner = ("=== start #%d: %s\n" % (self.starts, " ".join(argv))).encode()
        out.write(banner)
        err.write(banner)
        out.flush()
        err.flush()
        if SETPRIV:
            # Die with the test runner even if it is SIGKILLed (e.g. a ctest timeout).
            argv = [SETPRIV, "--pdeathsig", "KILL", "--"] + list(argv)
        try:
            self.popen = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                          env=env, start_new_session=True)
        except OSError as e:
            raise HarnessError("cannot start %s: %s" % (self.name, e))
        finally:
            out.close()
            err.close()

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def kill(self):
        """SIGKILL, as a crash would; waits until the process is gone."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace=TERM_GRACE):
        """SIGTERM, then SIGKILL after grace seconds. Returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.send_signal(signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode

    def tails(self, lines=40):
        return "--- %s stdout (tail) ---\n%s\n--- %s stderr (tail) ---\n%s\n" % (
            self.name, _tail(self.out_path, lines), self.name, _tail(self.err_path, lines))


class Cluster:
    """broker + one catalog node + edge, in a fresh temp dir."""

    ORDER = ("broker", "node", "edge")

    def __init__(self, actors=("catalog",), env=None, node_id="n1"):
        self.actors = list(actors)
        self.node_id = node_id
        self.tmp = tempfile.mkdtemp(prefix="mercato-e2e-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_dir = os.path.join(self.tmp, "logs")
        os.makedirs(self.data_dir)
        os.makedirs(self.log_dir)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.procs = {n: Proc(n, self.log_dir) for n in self.ORDER}
        self.endpoint = None      # broker endpoint, fixed after the first start
        self.port = None          # edge port, from its port file
        self.failed = False       # set by tests on failure: keeps the temp dir
        self.admin_token = os.environ.get("MERCATO_E2E_ADMIN_TOKEN")

    # --- public API -------------------------------------------------------------------------
    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def api(self):
        return self.base_url + API

    def admin_headers(self):
        return {"Authorization": "Bearer " + self.admin_token} if self.admin_token else {}

    def start_all(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        try:
            for name in self.ORDER:
                self.start(name, timeout=max(0.1, deadline - time.monotonic()))
            self.wait_ready(timeout=max(0.1, deadline - time.monotonic()))
        except Exception as e:
            self.stop_all()
            self.failed = True
            raise HarnessError("%s\n%s" % (e, self.tails())) from None
        return self

    def start(self, name, timeout=START_TIMEOUT):
        """Start (or restart) one process and wait until it has announced itself."""
        p = self.procs[name]
        if name == "broker":
            self._start_broker(p, timeout)
        elif name == "node":
            p.start([self._bin("mercato-node"), "--broker", self.endpoint, "--data", self.data_dir,
                     "--actors", ",".join(self.actors), "--node-id", self.node_id], self.env)
            # A node writes no file; its liveness shows in /readyz (see wait_ready).
        elif name == "edge":
            port_file = os.path.join(self.tmp, "edge.port")
            _unlink(port_file)
            argv = [self._bin("mercato-edge"), "--port", "0", "--broker",
                    self.endpoint, "--data", self.data_dir, "--port-file", port_file]
            p.start(argv, self.env)
            port = wait_for(lambda: self._check_alive(p) and _read_file(port_file), timeout,
                            what="edge port file")
            self.port = int(port)
            wait_for(lambda: self._check_alive(p) and
                     requests.get(self.base_url + "/healthz", timeout=1).status_code == 200,
                     timeout, what="edge /healthz == 200")
        else:
            raise KeyError(name)

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait until GET /readyz is 200 (every service has a live node)."""
        def ready():
            for p in self.procs.values():
                if p.popen is not None:
                    self._check_alive(p)
            return requests.get(self.base_url + "/readyz", timeout=1).status_code == 200
        wait_for(ready, timeout, what="GET /readyz == 200")

    def kill(self, name):
        """SIGKILL one process (simulated crash)."""
        self.procs[name].kill()

    def restart(self, name, timeout=START_TIMEOUT):
        """SIGKILL (if running) and start again, then wait for readiness."""
        self.kill(name)
        self.start(name, timeout=timeout)
        self.wait_ready(timeout=timeout)

    def stop_all(self):
        """SIGTERM every process (edge first), SIGKILL stragglers. Returns {name: exit code}."""
        codes = {}
        for name in reversed(self.ORDER):
            try:
                codes[name] = self.procs[name].stop()
            except Exception as e:  # noqa: BLE001 - keep tearing down the others
                codes[name] = repr(e)
        return codes

    def cleanup(self):
        self.stop_all()
        self.remove_tmp()

    def remove_tmp(self):
        if self.failed:
            sys.stderr.write("\n[harness] keeping %s for inspection\n" % self.tmp)
        elif not os.environ.get("MERCATO_E2E_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def tails(self, lines=40):
        return "".join(p.tails(lines) for p in self.procs.values() if p.starts)

    def __enter__(self):
        return self.start_all()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.failed = True
            sys.stderr.write(self.tails())
        self.cleanup()
        return False

    # --- internals --------------------------------------------------------------------------
    def _bin(self, name):
        path = os.path.join(BIN_DIR, name)
        if not os.access(path, os.X_OK):
            raise HarnessError("missing binary %s (set MERCATO_BIN)" % path)
        return path

    def _check_alive(self, p):
        if not p.alive():
            raise HarnessError("%s exited with code %s" % (
                p.name, p.popen.returncode if p.popen else None))
        return True

    def _start_broker(self, p, timeout):
        ep_file = os.path.join(self.tmp, "broker.endpoint")
        deadline = time.monotonic() + timeout
        while True:
            _unlink(ep_file)
            # First start: ephemeral port. Restart: rebind the same endpoint, since node and
            # edge keep reconnecting to it.
            p.start([self._bin("mercato-broker"), "--bind", self.endpoint or "tcp://127.0.0.1:*",
                     "--endpoint-file", ep_file], self.env)
            try:
                ep = wait_for(lambda: self._check_alive(p) and _read_file(ep_file),
                              max(0.1, deadline - time.monotonic()), what="broker endpoint file")
                break
            except HarnessError:
                # The old port may be briefly unavailable after a crash: retry until deadline.
                if self.endpoint is None or time.monotonic() >= deadline or p.alive():
                    raise
                time.sleep(0.1)
        if self.endpoint is None:
            self.endpoint = ep
        elif ep != self.endpoint:
            raise HarnessError("broker rebound to %s, expected %s" % (ep, self.endpoint))


def _read_file(path):
    try:
        with open(path) as f:
            s = f.read().strip()
    except FileNotFoundError:
        return None
    return s or None


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ClusterTestCase(unittest.TestCase):
    """Base class: prints process log tails for any failing test and keeps the temp dir.

    Subclasses set PER_TEST = True to get a fresh cluster per test (self.cluster) instead of one
    shared by the whole class (cls.cluster).
    """

    PER_TEST = False
    ACTORS = ("catalog",)
    cluster = None

    @classmethod
    def setUpClass(cls):
        if not cls.PER_TEST:
            cls.cluster = Cluster(actors=cls.ACTORS)
            cls.addClassCleanup(cls.cluster.cleanup)
            cls.cluster.start_all()

    def setUp(self):
        if self.PER_TEST:
            self.cluster = Cluster(actors=self.ACTORS)
            # Only stop here; run() decides whether the logs are kept, after the outcome is known.
            self.addCleanup(self.cluster.stop_all)
            self.cluster.start_all()
        self.http = requests.Session()
        self.addCleanup(self.http.close)

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        c = self.__dict__.get("cluster") if self.PER_TEST else type(self).cluster
        if c is not None:
            if len(result.failures) + len(result.errors) > before:
                c.failed = True
                sys.stderr.write("\n[harness] process logs for %s:\n%s" % (self.id(), c.tails()))
            if self.PER_TEST:
                c.remove_tmp()
        return out

    # --- small HTTP helpers -----------------------------------------------------------------
    @property
    def api(self):
        return self.cluster.api

    def url(self, path):
        return self.cluster.base_url + path

    def get(self, path, **kw):
        kw.setdefault("timeout", 10)
        return self.http.get(self.url(path), **kw)

    def post_json(self, path, body, headers=None, **kw):
        h = dict(self.cluster.admin_headers())
        h.update(headers or {})
        kw.setdefault("timeout", 10)
        return self.http.post(self.url(path), data=json.dumps(body), headers={
            "Content-Type": "application/json", **h}, **kw)

    def patch_json(self, path, body, headers=None, content_type="application/merge-patch+json",
                   **kw):
        h = {"Content-Type": content_type}
        h.update(self.cluster.admin_headers())
        h.update(headers or {})
        kw.setdefault("timeout", 10)
        return self.http.patch(self.url(path), data=json.dumps(body), headers=h, **kw)

    def delete(self, path, headers=None, **kw):
        h = dict(self.cluster.admin_headers())
        h.update(headers or {})
        kw.setdefault("timeout", 10)
        return self.http.delete(self.url(path), headers=h, **kw)

    def assertStatus(self, resp, status, msg=""):
        """assertEqual on the status code that shows the request and response on failure."""
        if resp.status_code != status:
            req = resp.request
            body = req.body if isinstance(req.body, str) else (req.body or b"")[:500]
            self.fail("%s %s%s\n  sent: %r\n  expected %d, got %d\n  response headers: %s\n"
                      "  response body: %s" % (
                          req.method, req.url, (" (" + msg + ")") if msg else "",
                          body if isinstance(body, str) else bytes(body)[:500],
                          status, resp.status_code, dict(resp.headers), resp.text[:1000]))

    def assertProblem(self, resp, status, code=None):
        """The response is an RFC 9457 problem with CONTRACT 2's members."""
        self.assertStatus(resp, status)
        ctype = resp.headers.get("Content-Type", "")
        self.assertTrue(ctype.startswith("application/problem+json"),
                        "Content-Type %r is not application/problem+json; body %s" % (
                            ctype, resp.text[:500]))
        p = resp.json()
        for k in ("type", "title", "status", "detail", "code"):
            self.assertIn(k, p, "problem lacks %r: %s" % (k, p))
        self.assertEqual(p["status"], status, p)
        self.assertIsInstance(p["code"], str)
        self.assertTrue(p["code"], p)
        if code is not None:
            self.assertEqual(p["code"], code, p)
        return p
