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
    MERCATO_E2E_ADMIN_TOKEN     bearer token sent on catalog writes (CONTRACT 4: writes are admin);
                                unset: the harness logs in as the bootstrap admin once per cluster

Identity (CONTRACT 3): every Cluster runs the catalog and identity actors and sets
MERCATO_ADMIN_EMAIL / MERCATO_ADMIN_PASSWORD (ADMIN_EMAIL / ADMIN_PASSWORD below) unless the
caller's env overrides them. cluster.admin_headers() logs in once and caches the bearer token;
cluster.register_customer() registers and logs in a fresh customer and returns a Principal.

Events (CONTRACT 8): Cluster(kafka=True) (or ClusterTestCase.KAFKA = True) also runs
mercato-kafka-dev (librdkafka's in-memory mock cluster; its address in a bootstrap file in the temp
dir, exposed as cluster.kafka_bootstrap) and mercato-relay (outbox -> Kafka). Both are ordinary
processes: cluster.kill("kafka"), cluster.start("kafka") (a new port, rewritten bootstrap file,
an empty cluster), cluster.kill("relay"), cluster.start("relay"). wait_ready() does not fail
because one of those two was killed on purpose.

Keys (CONTRACT 9): mercato-keys makes the cluster's keys in cluster.keys_dir before the first
process starts; among them the event key pair: the relay signs every record with events.key,
and a node with a Kafka consumer will not start without events.pub.

The broker binds a unix socket in the temp dir (cluster.endpoint); Cluster(broker_bind_extra=
"tcp://127.0.0.1:0") makes it bind that endpoint too (a TCP listener, for tests of every
listening socket; find its port from /proc or ss). Default: the unix socket only.
"""

import faulthandler
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

import requests

BIN_DIR = os.environ.get("MERCATO_BIN") or "/work/main/build/bin"
# a test file that hangs shows where before ctest's 600 s kill takes its output with it
faulthandler.dump_traceback_later(float(os.environ.get("MERCATO_E2E_STACKS_AFTER", "540")))
START_TIMEOUT = float(os.environ.get("MERCATO_E2E_START_TIMEOUT", "20"))
TERM_GRACE = 5.0
API = "/api/v1"
SETPRIV = shutil.which("setpriv")
DEFAULT_ACTORS = ("catalog", "identity", "inventory", "orders", "cart", "payments", "shipping", "notifications")
ADMIN_EMAIL = "admin@mercato.test"
ADMIN_PASSWORD = "e2e-Admin-Pass-7f3c9a!"
TOKEN_REUSE_S = 600.0     # access tokens live 900 s; log in again well before that
KAFKA_PROCS = ("kafka", "relay")
BOOTSTRAP_RE = re.compile(r"^[^\s:]+:\d+$")


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
        self.killed = False       # set by kill(), cleared by start(): down on purpose
        self.out_path = os.path.join(logdir, name + ".out")
        self.err_path = os.path.join(logdir, name + ".err")

    def start(self, argv, env):
        assert not self.alive(), "%s already running" % self.name
        self.starts += 1
        self.killed = False
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
        self.killed = True
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


class Principal:
    """A user the tests act as: credentials, the last token pair, and the user record."""

    def __init__(self, email, password, name=None, user=None, tokens=None):
        self.email, self.password, self.name = email, password, name
        self.user = user or {}
        self.tokens = tokens or {}

    @property
    def id(self):
        return self.user.get("id")

    @property
    def access_token(self):
        return self.tokens.get("access_token")

    @property
    def refresh_token(self):
        return self.tokens.get("refresh_token")

    def headers(self):
        return {"Authorization": "Bearer " + self.access_token}

    def __repr__(self):
        return "<Principal %s id=%s>" % (self.email, self.id)


def unique_email(prefix="user"):
    return "%s-%s@example.test" % (prefix, uuid.uuid4().hex[:12])


def strong_password():
    return "Pw-" + uuid.uuid4().hex[:16] + "-x9!"


def log_records(cluster, proc, msg):
    """The JSON log lines of process proc (a name in cluster.procs) whose msg is msg."""
    out = []
    try:
        with open(cluster.procs[proc].out_path, "rb") as f:
            data = f.read()
    except OSError:
        return out
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == msg:
                out.append(rec)
    return out


class Cluster:
    """broker + one node (catalog and identity actors) + edge, in a fresh temp dir; with
    kafka=True also mercato-kafka-dev and mercato-relay."""

    ORDER = ("broker", "node", "edge")
    KAFKA_ORDER = ("kafka", "broker", "node", "edge", "relay")

    def __init__(self, actors=DEFAULT_ACTORS, env=None, node_id="n1", kafka=False,
                 broker_bind_extra=None):
        self.actors = list(actors)
        # More endpoints for the broker to bind after its own unix socket, comma-separated
        # (mercato-broker --bind takes a list; the endpoint file, and so self.endpoint, keep the
        # first): "tcp://127.0.0.1:0" gives it a TCP listener too, found by its port (ss, /proc).
        self.broker_bind_extra = broker_bind_extra
        self.kafka = bool(kafka)
        self.order = self.KAFKA_ORDER if self.kafka else self.ORDER
        self.node_id = node_id
        self.tmp = tempfile.mkdtemp(prefix="mercato-e2e-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_dir = os.path.join(self.tmp, "logs")
        os.makedirs(self.data_dir)
        os.makedirs(self.log_dir)
        self.env = dict(os.environ)
        self.env.setdefault("MERCATO_ADMIN_EMAIL", ADMIN_EMAIL)
        self.env.setdefault("MERCATO_ADMIN_PASSWORD", ADMIN_PASSWORD)
        # The internal plane's keys (CONTRACT 9): made once per cluster by mercato-keys, read by
        # every process from MERCATO_KEYS_DIR. Tests that attack the plane use them too.
        self.keys_dir = os.path.join(self.tmp, "plane")
        self.env["MERCATO_KEYS_DIR"] = self.keys_dir
        self.env.update(env or {})
        self.procs = {n: Proc(n, self.log_dir) for n in self.order}
        self.endpoint = None      # broker endpoint, fixed after the first start
        self.bootstrap_file = os.path.join(self.data_dir, "kafka.bootstrap") if self.kafka else None
        self.kafka_bootstrap = None   # "127.0.0.1:NNNNN" of the running mercato-kafka-dev
        self.port = None          # edge port, from its port file
        self.failed = False       # set by tests on failure: keeps the temp dir
        self.wait_for_keys = True  # wait_ready() also waits for the JWKS (identity actor)
        self.admin_token = os.environ.get("MERCATO_E2E_ADMIN_TOKEN")
        self._admin_fixed = bool(self.admin_token)     # from the environment: never refreshed
        self._admin_at = 0.0
        self._admin_lock = threading.Lock()

    # --- public API -------------------------------------------------------------------------
    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def api(self):
        return self.base_url + API

    @property
    def admin_email(self):
        return self.env.get("MERCATO_ADMIN_EMAIL")

    @property
    def admin_password(self):
        return self.env.get("MERCATO_ADMIN_PASSWORD")

    @admin_password.setter
    def admin_password(self, value):
        """For tests that change the admin's password: later logins use the new one."""
        self.env["MERCATO_ADMIN_PASSWORD"] = value

    def admin_headers(self):
        """Authorization for the bootstrap admin: one login per cluster, cached (thread-safe).

        Honours MERCATO_E2E_ADMIN_TOKEN. Without the identity actor (or before the login route
        exists: 404) there is no admin to log in as and this returns {}."""
        if self._admin_fixed:
            return {"Authorization": "Bearer " + self.admin_token}
        if not any(a.split(":")[0] == "identity" for a in self.actors) or not self.admin_email or self.port is None:
            return {}
        with self._admin_lock:
            if self.admin_token is None or time.monotonic() - self._admin_at > TOKEN_REUSE_S:
                t0 = time.monotonic()
                r = requests.post(self.api + "/auth/login", json={
                    "email": self.admin_email, "password": self.admin_password}, timeout=10)
                if r.status_code == 404:
                    return {}
                if r.status_code != 200:
                    raise HarnessError("admin login as %s failed: %d %s" % (
                        self.admin_email, r.status_code, r.text[:500]))
                self.admin_token = r.json()["access_token"]
                self._admin_at = t0
            return {"Authorization": "Bearer " + self.admin_token}

    def login(self, email, password):
        """POST /auth/login; returns the token reply or raises HarnessError."""
        r = requests.post(self.api + "/auth/login", json={"email": email, "password": password},
                          timeout=10)
        if r.status_code != 200:
            raise HarnessError("login as %s failed: %d %s" % (email, r.status_code, r.text[:500]))
        return r.json()

    def register(self, email=None, password=None, name=None):
        """POST /auth/register (no login); returns a Principal with .user set."""
        email = email or unique_email()
        password = password or strong_password()
        name = name or "E2E " + email.split("@")[0]
        r = requests.post(self.api + "/auth/register", json={
            "email": email, "password": password, "name": name}, timeout=10)
        if r.status_code != 201:
            raise HarnessError("register %s failed: %d %s" % (email, r.status_code, r.text[:500]))
        return Principal(email, password, name, user=r.json())

    def register_customer(self, email=None, password=None, name=None):
        """Register a fresh customer and log it in: a Principal with .user and .tokens."""
        p = self.register(email, password, name)
        p.tokens = self.login(p.email, p.password)
        return p

    def customer_headers(self, **kw):
        """Authorization headers of a freshly registered customer."""
        return self.register_customer(**kw).headers()

    def admin_principal(self):
        """A Principal for the bootstrap admin (a fresh login: its own refresh-token family)."""
        p = Principal(self.admin_email, self.admin_password, "admin")
        p.tokens = self.login(p.email, p.password)
        r = requests.get(self.api + "/users/me", headers=p.headers(), timeout=10)
        if r.status_code == 200:
            p.user = r.json()
        return p

    def start_all(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        try:
            for name in self.order:
                if name != "relay":
                    self.start(name, timeout=max(0.1, deadline - time.monotonic()))
            self.wait_ready(timeout=max(0.1, deadline - time.monotonic()))
            if "relay" in self.procs:
                # After readiness: the node has created the actor environments it reads.
                self.start("relay", timeout=max(0.1, deadline - time.monotonic()))
        except Exception as e:
            self.stop_all()
            self.failed = True
            raise HarnessError("%s\n%s" % (e, self.tails())) from None
        return self

    def make_keys(self):
        """Create the cluster's plane keys (harmless when they exist)."""
        r = subprocess.run([self._bin("mercato-keys"), self.keys_dir], capture_output=True, timeout=30)
        if r.returncode != 0:
            raise HarnessError("mercato-keys failed: %s" % r.stderr.decode("utf-8", "replace"))

    def plane_socket(self, ctx, kind, key="edge", server=False):
        """A pyzmq socket of kind that proves the plane key called key (czmq certificate files
        read by zmq.auth), set up as a CURVE client of the broker; server=True makes it a CURVE
        server with the broker's own key instead (a test playing the broker). key=None: no CURVE."""
        import zmq
        import zmq.auth
        if not os.path.exists(os.path.join(self.keys_dir, "broker.cert")):
            self.make_keys()
        sock = ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        # a send with no pipe to queue on (a refused handshake drops it) fails, not hangs the test
        sock.setsockopt(zmq.SNDTIMEO, 10000)
        if server:
            pub, sec = zmq.auth.load_certificate(os.path.join(self.keys_dir, "broker.cert_secret"))
            sock.curve_publickey, sock.curve_secretkey, sock.curve_server = pub, sec, True
        elif key is not None:
            pub, sec = zmq.auth.load_certificate(os.path.join(self.keys_dir, key + ".cert_secret"))
            server_pub, _ = zmq.auth.load_certificate(os.path.join(self.keys_dir, "broker.cert"))
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, server_pub
        return sock

    def start(self, name, timeout=START_TIMEOUT):
        """Start (or restart) one process and wait until it has announced itself."""
        if not os.path.exists(os.path.join(self.keys_dir, "broker.cert")):
            self.make_keys()
        p = self.procs[name]
        if name == "broker":
            self._start_broker(p, timeout)
        elif name == "node":
            p.start([self._bin("mercato-node"), "--broker", self.endpoint, "--data", self.data_dir,
                     "--actors", ",".join(self.actors), "--node-id",
                     # unique across concurrent clusters: a broker replaces a worker that has the
                     # same node id
                     "%s-%s" % (self.node_id, os.path.basename(self.tmp))], self.env)
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
        elif name == "kafka" and self.kafka:
            _unlink(self.bootstrap_file)
            self.kafka_bootstrap = None
            p.start([self._bin("mercato-kafka-dev"), "--bootstrap-file", self.bootstrap_file],
                    self.env)
            self.kafka_bootstrap = wait_for(
                lambda: self._check_alive(p) and _bootstrap(self.bootstrap_file), timeout,
                what="kafka-dev bootstrap file")
        elif name == "relay" and self.kafka:
            p.start([self._bin("mercato-relay"), "--data", self.data_dir,
                     "--bootstrap-file", self.bootstrap_file], self.env)
            # The relay announces nothing (it never waits for Kafka); it just has to stay up.
            self._check_alive(p)
        else:
            raise KeyError(name)

    def add_node(self, name, actors, data_dir=None, node_id=None):
        """Start one more node process called name (its own data dir unless given) that joins
        this cluster's directory; stop_all stops it with the rest."""
        data_dir = data_dir or os.path.join(self.tmp, name + "-data")
        os.makedirs(data_dir, exist_ok=True)
        p = self.procs.get(name) or Proc(name, self.log_dir)
        if name not in self.procs:
            self.procs[name] = p
            self.order = tuple(self.order) + (name,)
        p.start([self._bin("mercato-node"), "--broker", self.endpoint, "--data", data_dir,
                 "--actors", ",".join(actors), "--node-id",
                 node_id or "%s-%s" % (name, os.path.basename(self.tmp))], self.env)
        return p

    def add_relay(self, name, data_dir):
        """Start one more outbox relay called name, for the outboxes under data_dir (another
        node's data directory), publishing to this cluster's Kafka; stop_all stops it."""
        p = self.procs.get(name) or Proc(name, self.log_dir)
        if name not in self.procs:
            self.procs[name] = p
            self.order = tuple(self.order) + (name,)
        p.start([self._bin("mercato-relay"), "--data", data_dir, "--bootstrap-file", self.bootstrap_file],
                self.env)
        return p

    def broker_call(self, service, payload=b"", key="ops", timeout=5.0):
        """Asks the broker an mmi.* question with a plane key; returns the answer's envelope."""
        import zmq
        ctx = zmq.Context.instance()
        sock = self.plane_socket(ctx, zmq.DEALER, key)
        try:
            sock.connect(self.endpoint)
            rid = os.urandom(8)
            sock.send_multipart([b"MCC1", b"\x01", service.encode(), rid, payload])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if sock.poll(int(max(1, (deadline - time.monotonic()) * 1000))):
                    frames = sock.recv_multipart()
                    if len(frames) == 5 and frames[3] == rid:
                        return frames[4]
            raise HarnessError("the broker did not answer %s" % service)
        finally:
            sock.close(0)

    def directory(self):
        """The broker's shard table (mmi.directory) as a dict."""
        return json.loads(self.broker_call("mmi.directory"))

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait until GET /readyz is 200 (every service has a live node) and, with the identity
        actor, until the edge serves the JWKS (wait_for_keys; test_identity checks separately
        that readiness already implies it)."""
        deadline = time.monotonic() + timeout

        def ready():
            for p in self.procs.values():
                if p.popen is not None and not (p.name in KAFKA_PROCS and p.killed):
                    self._check_alive(p)
            return requests.get(self.base_url + "/readyz", timeout=1).status_code == 200
        wait_for(ready, timeout, what="GET /readyz == 200")
        if self.wait_for_keys and "identity" in self.actors:
            wait_for(lambda: requests.get(self.base_url + "/.well-known/jwks.json",
                                          timeout=1).status_code == 200,
                     max(0.1, deadline - time.monotonic()),
                     what="GET /.well-known/jwks.json == 200")

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
        for name in reversed(self.order):
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
            # A unix socket in this cluster's own temp dir: a TCP port freed by a killed broker
            # could be taken by a concurrently running cluster, and nodes would join the wrong one.
            bind = self.endpoint or "ipc://" + os.path.join(self.tmp, "broker.sock")
            if self.broker_bind_extra:
                bind += "," + self.broker_bind_extra
            p.start([self._bin("mercato-broker"), "--bind", bind, "--endpoint-file", ep_file,
                     "--data", os.path.join(self.tmp, "broker")], self.env)
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


def _bootstrap(path):
    """The address in a bootstrap file once it is complete ("host:port"), else None."""
    s = _read_file(path)
    return s if s and BOOTSTRAP_RE.match(s) else None


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ClusterTestCase(unittest.TestCase):
    """Base class: prints process log tails for any failing test and keeps the temp dir.

    Subclasses set PER_TEST = True to get a fresh cluster per test (self.cluster) instead of one
    shared by the whole class (cls.cluster), and ENV = {...} to add to its processes' environment.
    """

    PER_TEST = False
    ACTORS = DEFAULT_ACTORS
    KAFKA = False             # also run mercato-kafka-dev and mercato-relay
    ENV = None                # extra environment for the cluster's processes
    cluster = None

    @classmethod
    def setUpClass(cls):
        if not cls.PER_TEST:
            cls.cluster = Cluster(actors=cls.ACTORS, kafka=cls.KAFKA, env=cls.ENV)
            cls.addClassCleanup(cls.cluster.cleanup)
            cls.cluster.start_all()

    def setUp(self):
        if self.PER_TEST:
            self.cluster = Cluster(actors=self.ACTORS, kafka=self.KAFKA, env=self.ENV)
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

    def call(self, method, path, body=None, auth=None, headers=None, data=None,
             content_type="application/json", **kw):
        """One request with explicit authorization (nothing implicit, unlike post_json):
        auth is None (anonymous), a Principal, a bearer token string, or a headers dict."""
        h = {}
        if body is not None or data is not None:
            h["Content-Type"] = content_type
        if isinstance(auth, Principal):
            h.update(auth.headers())
        elif isinstance(auth, str):
            h["Authorization"] = "Bearer " + auth
        elif isinstance(auth, dict):
            h.update(auth)
        h.update(headers or {})
        if body is not None:
            data = json.dumps(body)
        kw.setdefault("timeout", 10)
        return self.http.request(method, self.url(path), data=data, headers=h, **kw)

    def assertUnauthorized(self, resp, msg=""):
        """CONTRACT 2: 401 is a problem and carries WWW-Authenticate: Bearer."""
        self.assertStatus(resp, 401, msg)
        www = resp.headers.get("WWW-Authenticate", "")
        self.assertRegex(www, r"^\s*[Bb][Ee][Aa][Rr][Ee][Rr]\b",
                         "401 without WWW-Authenticate: Bearer (%s); headers %s" % (
                             msg, dict(resp.headers)))
        return self.assertProblem(resp, 401)

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
