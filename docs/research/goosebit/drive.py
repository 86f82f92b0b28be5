#!/usr/bin/env python3
"""Drive a real gooseBit end to end, on 127.0.0.1 only.

  python3 drive.py [--keep] [--version 0.2.12]

Steps (each printed):
  0. venv ./venv with goosebit (created + pip-installed if missing)
  1. temp dir: goosebit.yaml (sqlite db, artifacts dir, max_concurrent_updates=1), aerich upgrade
  2. uvicorn goosebit:app --host 127.0.0.1 --port <free port>, wait until it answers
  3. first admin user via POST /setup, bearer token via POST /login
  4. a minimal .swu (newc cpio, sw-description first) made here; bad uploads refused
  5. upload (PUT /api/v1/software), rollout (PUT /api/v1/rollouts)
  6. fake controllers dev-a, dev-b with curl: poll, configData, deploymentBase, download (+Range)
  7. feedback proceeding/downloaded/closed; cluster limit 1: dev-b not offered while dev-a runs
  8. failure path: closed/failure -> Error, no offer, force_update -> offered again
  9. device state through the REST API (last_state, sw_version, log, rollout counts)
 10. restart on the same DB with device auth strict: TargetToken required
The server is stopped by its PID at the end (also on failure). Exit code 0 = all checks passed.
"""
import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.environ.get("GOOSEBIT_VENV", os.path.join(HERE, "venv"))
VPY = os.path.join(VENV, "bin", "python")
sys.path.insert(0, HERE)
from mkswu import _entry, make_swu  # noqa: E402

CHECKS = {"passed": 0, "failed": 0}
VERBOSE_CURL = True


def step(msg):
    print(f"\n=== {msg}", flush=True)


def check(cond, what):
    if cond:
        CHECKS["passed"] += 1
        print(f"  ok   {what}", flush=True)
    else:
        CHECKS["failed"] += 1
        print(f"  FAIL {what}", flush=True)
        raise SystemExit(f"check failed: {what}")


def curl(method, url, *, token=None, json_body=None, form=None, files=None, headers=(), out=None, show=True):
    """Run curl; return (status, headers_text, body_bytes). Only 127.0.0.1 URLs are allowed."""
    assert url.startswith("http://127.0.0.1:"), url
    hdr_file = tempfile.NamedTemporaryFile(delete=False)
    body_file = out or tempfile.NamedTemporaryFile(delete=False).name
    cmd = ["curl", "-sS", "--max-time", "30", "-X", method, "-D", hdr_file.name, "-o", body_file, "-w", "%{http_code}"]
    shown = ["curl", "-X", method]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
        shown += ["-H", "'Authorization: Bearer $TOKEN'"]
    for h in headers:
        cmd += ["-H", h]
        shown += ["-H", shlex.quote(h)]
    if json_body is not None:
        data = json.dumps(json_body)
        cmd += ["-H", "Content-Type: application/json", "--data-binary", data]
        shown += ["-H", "Content-Type:application/json", "-d", shlex.quote(data)]
    for k, v in (form or {}).items():
        cmd += ["--data-urlencode", f"{k}={v}"]
        shown += ["--data-urlencode", shlex.quote(f"{k}={v}")]
    for k, path in (files or {}).items():
        cmd += ["-F", f"{k}=@{path}"]
        shown += ["-F", f"{k}=@{os.path.basename(path)}"]
    if method == "HEAD":
        cmd[cmd.index("-X") : cmd.index("-X") + 2] = ["-I"]
        shown[1:3] = ["-I"]
    cmd.append(url)
    shown.append(url)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    status = int(r.stdout.strip() or 0)
    with open(hdr_file.name) as f:
        hdrs = f.read()
    os.unlink(hdr_file.name)
    body = b""
    if out is None:
        with open(body_file, "rb") as f:
            body = f.read()
        os.unlink(body_file)
    if show:
        print("  $ " + " ".join(shown))
        txt = body.decode(errors="replace")
        print(f"    -> {status} {txt[:400]}{'...' if len(txt) > 400 else ''}")
    return status, hdrs, body


def js(body):
    try:
        return json.loads(body.decode()) if body else None
    except ValueError:
        return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ensure_venv(version):
    step(f"0. venv {VENV} with goosebit=={version}")
    ok = os.path.exists(VPY) and subprocess.run(
        [VPY, "-c", f"import importlib.metadata as m; assert m.version('goosebit')=='{version}'"],
        capture_output=True,
    ).returncode == 0
    if ok:
        print("  venv present")
        return
    t = time.time()
    if not os.path.exists(VPY):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([VPY, "-m", "pip", "install", "-q", f"goosebit=={version}"], check=True)
    print(f"  installed in {time.time() - t:.1f}s")


class Server:
    def __init__(self, tmp, env_extra=None):
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, GOOSEBIT_SETTINGS=os.path.join(tmp, "goosebit.yaml"), **(env_extra or {}))
        self.proc = None

    def start(self):
        log = open(os.path.join(self.tmp, "server.log"), "ab")
        cmd = [VPY, "-m", "uvicorn", "goosebit:app", "--host", "127.0.0.1", "--port", str(self.port)]
        print("  $ GOOSEBIT_SETTINGS=" + self.env["GOOSEBIT_SETTINGS"] + " " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        t0 = time.time()
        for _ in range(300):  # <= 30 s
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited early, see {self.tmp}/server.log")
            try:
                st, _, _ = curl("GET", self.base + "/login", show=False)
                if st in (200, 302):
                    break
            except Exception:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("server did not come up in 30 s")
        print(f"  pid {self.proc.pid} listening on {self.base} after {time.time() - t0:.1f}s")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        print(f"  stopped pid {self.proc.pid} (exit {self.proc.returncode})")


SW_DESCRIPTION = """software =
{
    version = "%(version)s";
    description = "reimage bundle %(product)s %(version)s";
    %(product)s = {
        hardware-compatibility = [ "1.0", "1.1" ];
    };
};
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--version", default=os.environ.get("GOOSEBIT_VERSION", "0.2.12"))
    args = ap.parse_args()
    t_start = time.time()

    ensure_venv(args.version)

    tmp = tempfile.mkdtemp(prefix="goosebit-drive-")
    step(f"1. temp dir {tmp}: settings + database migration")
    sp = subprocess.run(
        [VPY, "-c", "import sysconfig;print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with open(os.path.join(tmp, "goosebit.yaml"), "w") as f:
        f.write(
            f"db_uri: sqlite:///{tmp}/db.sqlite3\n"
            f"artifacts_dir: {tmp}/artifacts\n"
            "poll_time: '00:00:05'\n"
            "max_concurrent_updates: 1\n"
            "tenant: DEFAULT\n"
            "track_device_ip: true\n"
            # gooseBit's default logging config disables uvicorn's loggers (no access log, no tracebacks)
            "logging:\n"
            "  version: 1\n"
            "  disable_existing_loggers: false\n"
            "  formatters: {simple: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}\n"
            "  handlers: {console: {class: logging.StreamHandler, formatter: simple}}\n"
            "  loggers: {tortoise: {level: WARNING}, aiosqlite: {level: WARNING}, multipart: {level: INFO}}\n"
            "  root: {level: INFO, handlers: [console]}\n"
        )
    with open(os.path.join(tmp, "aerich.toml"), "w") as f:
        f.write(
            '[tool.aerich]\ntortoise_orm = "goosebit.db.config.TORTOISE_CONF"\n'
            f'location = "{sp}/goosebit/db/migrations"\nsrc_folder = "."\n'
        )
    env = dict(os.environ, GOOSEBIT_SETTINGS=os.path.join(tmp, "goosebit.yaml"))
    r = subprocess.run(
        [os.path.join(VENV, "bin", "aerich"), "--config", os.path.join(tmp, "aerich.toml"), "upgrade"],
        cwd=tmp, env=env, capture_output=True, text=True,
    )
    print("  " + "\n  ".join(line for line in r.stdout.splitlines() if line.startswith("Success")))
    check(r.returncode == 0 and os.path.exists(os.path.join(tmp, "db.sqlite3")), "aerich upgrade created db.sqlite3")

    srv = Server(tmp)
    try:
        step("2. start gooseBit on 127.0.0.1")
        srv.start()
        B = srv.base
        DDI = B + "/DEFAULT/controller/v1"

        step("3. first admin user (POST /setup), then login (POST /login)")
        st, _, body = curl("GET", B + "/login", show=False)
        check(st == 302, "GET /login redirects to /setup while no user exists")
        st, _, body = curl("POST", B + "/setup", form={"username": "admin@goosebit.test", "password": "s3cret-pw"})
        check(st == 200 and js(body)["token_type"] == "bearer", "POST /setup created admin and returned a token")
        st, _, body = curl("POST", B + "/login", form={"username": "admin@goosebit.test", "password": "s3cret-pw"})
        check(st == 200, "POST /login")
        TOKEN = js(body)["access_token"]
        st, _, _ = curl("POST", B + "/login", form={"username": "admin@goosebit.test", "password": "wrong"})
        check(st == 401, "wrong password -> 401")
        st, _, _ = curl("GET", B + "/api/v1/devices")
        check(st == 401, "API without token -> 401")
        st, _, body = curl("POST", B + "/setup", form={"username": "intruder", "password": "x"})
        st2, _, body2 = curl("GET", B + "/api/v1/settings/users", token=js(body)["access_token"] if st == 200 else None)
        check(st == 200 and st2 == 200, "POST /setup still creates a full admin after setup (unauthenticated!)")
        curl("DELETE", B + "/api/v1/settings/users", token=TOKEN, json_body={"usernames": ["intruder"]})

        step("4. build .swu files (newc cpio, sw-description first)")
        product, version = "reimage-demo", "2.0.0"
        payload = os.urandom(300_000)
        swu = os.path.join(tmp, f"{product}-{version}.swu")
        n = make_swu(swu, SW_DESCRIPTION % {"product": product, "version": version},
                     [("payload.tar.zst", payload), ("manifest", b"product=reimage-demo\nversion=2.0.0\n")])
        sha1 = hashlib.sha1(open(swu, "rb").read()).hexdigest()
        print(f"  {swu}: {n} bytes, sha1 {sha1}")
        bad_first = os.path.join(tmp, "payload-first.swu")
        with open(bad_first, "wb") as f:
            f.write(_entry("payload.tar.zst", b"abc", 1) + _entry("sw-description", b'software={version="3.0.0";};', 2)
                    + _entry("TRAILER!!!", b"", 0, mode=0))
        no_version = os.path.join(tmp, "no-version.swu")
        make_swu(no_version, 'software = { description = "x"; };', [])
        bad_version = os.path.join(tmp, "bad-version.swu")
        make_swu(bad_version, 'software = { version = "two"; };', [])
        json_desc = os.path.join(tmp, "json-desc.swu")
        make_swu(json_desc, '{"software": {"version": "4.0.0"}}', [])
        notcpio = os.path.join(tmp, "plain.tar.zst")
        with open(notcpio, "wb") as f:
            f.write(b"\x28\xb5\x2f\xfd" + os.urandom(100))

        step("5. upload software, refused uploads, create rollout")
        for path, why in [(bad_first, "sw-description not first"), (no_version, "no software.version"),
                          (bad_version, "version 'two' not a swupdate/semver version"),
                          (json_desc, "JSON sw-description (libconfig only)"), (notcpio, "not a cpio (zstd magic)")]:
            st, _, body = curl("PUT", B + "/api/v1/software", token=TOKEN, files={"file": path})
            check(st == 422, f"upload refused: {why} -> 422 {js(body)['detail']}")
        st, _, body = curl("PUT", B + "/api/v1/software", token=TOKEN, files={"file": swu})
        check(st == 200, "upload accepted")
        sw_id = js(body)["id"]
        st, _, body = curl("PUT", B + "/api/v1/software", token=TOKEN, files={"file": swu})
        check(st == 409, "same version + overlapping compatibility -> 409")
        st, _, body = curl("GET", B + "/api/v1/software", token=TOKEN)
        sw = [s for s in js(body)["software"] if s["id"] == sw_id][0]
        check(sw["version"] == version and sw["hash"] == sha1 and sw["size"] == n, "software: version, sha1, size")
        comp = sorted((c["model"], c["revision"]) for c in sw["compatibility"])
        check(comp == [(product, "1.0"), (product, "1.1")], f"compatibility parsed as {comp}")
        st, _, body = curl("PUT", B + "/api/v1/rollouts", token=TOKEN,
                           json_body={"name": "rollout-2.0.0", "feed": "default", "software_id": sw_id})
        check(st == 200 and js(body)["success"], "rollout created on feed 'default'")
        rollout_id = js(body)["id"]

        step("6. fake controllers: register (poll + configData), get offered, download")
        for dev in ("dev-a", "dev-b"):
            st, _, body = curl("GET", f"{DDI}/{dev}")
            b = js(body)
            check(st == 200 and "configData" in b["_links"] and b["config"]["polling"]["sleep"] == "00:00:10",
                  f"{dev}: first poll auto-creates the device, asks for configData, sleep 10 s")
            st, _, body = curl("GET", f"{B}/api/v1/devices/{dev}", token=TOKEN, show=False)
            check(js(body)["last_state"] == "Unknown", f"{dev}: last_state Unknown before configData")
            st, _, body = curl("PUT", b["_links"]["configData"]["href"],
                               json_body={"mode": "merge", "data": {"hw_boardname": product, "hw_revision": "1.0",
                                                                    "sw_version": "1.0.0", "agent": "reimage"}})
            check(st == 200 and js(body)["success"], f"{dev}: PUT configData")
            st, _, body = curl("GET", f"{B}/api/v1/devices/{dev}", token=TOKEN)
            d = js(body)
            check(d["last_state"] == "Registered" and d["sw_version"] == "1.0.0"
                  and d["hardware"]["model"] == product, f"{dev}: Registered, sw_version 1.0.0, hardware {product}/1.0")

        st, _, body = curl("GET", f"{DDI}/dev-a")
        b = js(body)
        check("deploymentBase" in b["_links"] and b["config"]["polling"]["sleep"] == "00:00:05",
              "dev-a: poll offers deploymentBase, sleep = poll_time")
        db_href = b["_links"]["deploymentBase"]["href"]
        check(db_href == f"{DDI}/dev-a/deploymentBase/{sw_id}", f"deploymentBase href {db_href} (action id = software id)")
        st, _, body = curl("GET", db_href)
        dep = js(body)
        check(dep["id"] == str(sw_id) and dep["deployment"]["download"] == "forced"
              and dep["deployment"]["update"] == "forced", "deploymentBase: id, download/update = forced")
        art = dep["deployment"]["chunks"][0]["artifacts"][0]
        check(art["hashes"] == {"sha1": sha1} and art["size"] == n, "artifact: only sha1 hash, size")
        dl = art["_links"]["download"]["href"]
        check(dl == f"{DDI}/dev-a/download", f"artifact download link {dl}")
        st, hdrs, _ = curl("HEAD", dl)
        check(st == 200 and f"content-length: {n}" in hdrs.lower(), "HEAD download: Content-Length")
        out = os.path.join(tmp, "dev-a.download")
        st, hdrs, _ = curl("GET", dl, out=out)
        got = open(out, "rb").read()
        check(st == 200 and hashlib.sha1(got).hexdigest() == sha1 and "accept-ranges: bytes" in hdrs.lower(),
              "GET download: 200, sha1 matches, Accept-Ranges: bytes")
        st, hdrs, body = curl("GET", dl, headers=["Range: bytes=1000-"], show=False)
        check(st == 206 and body == got[1000:] and f"content-range: bytes 1000-{n - 1}/{n}" in hdrs.lower(),
              "Range: bytes=1000- -> 206 + correct tail (resume works)")
        st, hdrs, body = curl("GET", dl, headers=["Range: bytes=0-109"], show=False)
        check(st == 206 and body[:6] == b"070701" and body[110:110] == b"", "Range: bytes=0-109 -> first cpio header")

        step("7. feedback dev-a; cluster limit (max_concurrent_updates=1) holds dev-b back")
        fb_a = f"{db_href}/feedback"
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check("deploymentBase" in js(body)["_links"], "dev-b offered too while dev-a has not yet sent 'proceeding'")
        st, _, body = curl("POST", fb_a, json_body={"id": str(sw_id), "status": {
            "execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 0, "of": 3}},
            "details": ["reimage agent: download started"]}})
        check(st == 200 and js(body) == {"id": str(sw_id)}, "dev-a proceeding -> 200 {id}")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-a", token=TOKEN, show=False)
        check(js(body)["last_state"] == "Running", "dev-a last_state Running")
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check("deploymentBase" not in js(body)["_links"], "dev-b NOT offered while dev-a is Running (limit 1)")
        st, _, body = curl("GET", f"{DDI}/dev-a")
        check("deploymentBase" in js(body)["_links"], "dev-a (Running) is still offered its deployment")
        st, _, body = curl("POST", fb_a, json_body={"id": str(sw_id), "status": {
            "execution": "proceeding", "result": {"finished": "none", "progress": {"cnt": 2, "of": 3}},
            "details": ["Downloaded 66%"]}})
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-a/log", token=TOKEN)
        check(js(body)["progress"] == 66, "progress parsed from details text 'Downloaded 66%' (not from cnt/of)")
        st, _, body = curl("POST", fb_a, json_body={"id": str(sw_id), "status": {
            "execution": "downloaded", "result": {"finished": "none"}, "details": ["download verified"]}})
        check(st == 200, "dev-a downloaded -> 200 (server logs 'unhandled execution state', keeps details)")
        st, _, body = curl("GET", f"{DDI}/dev-b", show=False)
        check("deploymentBase" not in js(body)["_links"], "dev-b still held back after dev-a 'downloaded'")
        st, _, body = curl("POST", fb_a, json_body={"id": str(sw_id), "status": {
            "execution": "closed", "result": {"finished": "success"}, "details": ["new system 2.0.0 booted"]}})
        check(st == 200, "dev-a closed/success")
        st, _, body = curl("GET", f"{DDI}/dev-a")
        check(js(body)["_links"] == {}, "dev-a: no more deployment offered")
        st, _, body = curl("GET", db_href)
        check(st == 200 and body == b"null", "deploymentBase after success returns 200 with body null")
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check("deploymentBase" in js(body)["_links"], "dev-b offered now that dev-a has reported")

        step("8. failure path on dev-b")
        fb_b = f"{DDI}/dev-b/deploymentBase/{sw_id}/feedback"
        curl("POST", fb_b, json_body={"id": str(sw_id), "status": {
            "execution": "proceeding", "result": {"finished": "none"}, "details": ["download started"]}})
        st, _, body = curl("POST", fb_b, json_body={"id": str(sw_id), "status": {
            "execution": "closed", "result": {"finished": "failure"},
            "details": ["recovery: stage=verify reason=blake3 mismatch"]}})
        check(st == 200, "dev-b closed/failure")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-b", token=TOKEN)
        d = js(body)
        check(d["last_state"] == "Error" and d["sw_version"] == "1.0.0", "dev-b Error, sw_version still 1.0.0")
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check(js(body)["_links"] == {}, "device in Error is not offered again")
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN,
                           json_body={"devices": ["dev-b"], "force_update": True})
        check(st == 200, "PATCH /api/v1/devices force_update=true")
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check("deploymentBase" in js(body)["_links"], "dev-b offered again after force_update")

        step("9. device state through the REST API")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-a", token=TOKEN)
        d = js(body)
        check(d["last_state"] == "Finished" and d["sw_version"] == version and d["progress"] == 100,
              "dev-a: last_state Finished, sw_version 2.0.0, progress 100")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-a/log", token=TOKEN)
        log = js(body)["log"]
        check("download started" in log and "new system 2.0.0 booted" in log, "dev-a log holds every details line")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-b/log", token=TOKEN)
        check("blake3 mismatch" in js(body)["log"], "dev-b log holds the failure reason")
        st, _, body = curl("GET", f"{B}/api/v1/devices", token=TOKEN)
        check({x["id"] for x in js(body)["devices"]} == {"dev-a", "dev-b"}, "GET /api/v1/devices lists both")
        st, _, body = curl("GET", f"{B}/api/v1/rollouts", token=TOKEN)
        ro = [x for x in js(body)["rollouts"] if x["id"] == rollout_id][0]
        check(ro["success_count"] == 1 and ro["failure_count"] == 1, "rollout success_count 1, failure_count 1")

        step("9b. other assignment modes, rollout pause, routes gooseBit lacks")
        st, _, body = curl("PUT", B + "/api/v1/devices", token=TOKEN, json_body={"devices": ["dev-d"], "name": "box d"})
        check(st == 200, "PUT /api/v1/devices creates dev-d (hardware default/default)")
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN,
                           json_body={"devices": ["dev-d"], "software": str(sw_id)})
        check(st == 422, "assigning software incompatible with the device's hardware -> 422")
        curl("PUT", f"{DDI}/dev-d/configData", json_body={"data": {"hw_boardname": product, "hw_revision": "1.1",
                                                                     "sw_version": "1.0.0"}})
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN,
                           json_body={"devices": ["dev-d"], "software": str(sw_id)})
        check(st == 200, "PATCH software=<id> -> update_mode Assigned")
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-d", token=TOKEN)
        check(st == 500, "GET /api/v1/devices/{id} of an Assigned device -> 500 (gooseBit bug); use the list")
        st, _, body = curl("GET", f"{B}/api/v1/devices", token=TOKEN, show=False)
        d = [x for x in js(body)["devices"] if x["id"] == "dev-d"][0]
        print(f"    dev-d from GET /api/v1/devices: {json.dumps(d)[:300]}...")
        check(d["update_mode"] == "Assigned" and d["assigned_software"]["id"] == sw_id and d["feed"] is None,
              "dev-d: update_mode Assigned, assigned_software set, feed cleared")
        st, _, body = curl("GET", f"{DDI}/dev-d")
        check("deploymentBase" in js(body)["_links"], "dev-d offered its assigned software")
        st, _, body = curl("GET", f"{DDI}/dev-d", headers=["Host: 10.0.2.2:8080"])
        check(js(body)["_links"]["deploymentBase"]["href"].startswith("http://10.0.2.2:8080/"),
              "links are built from the request's Host header (what a QEMU guest sees)")
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN, json_body={"devices": ["dev-d"], "pinned": True})
        st, _, body = curl("GET", f"{DDI}/dev-d")
        check(st == 200 and js(body)["_links"] == {}, "pinned device is not offered anything")
        st, _, body = curl("PATCH", B + "/api/v1/rollouts", token=TOKEN,
                           json_body={"ids": [rollout_id], "paused": True})
        st, _, body = curl("GET", f"{DDI}/dev-b")
        check(js(body)["_links"] == {}, "rollout paused -> dev-b (rollout mode) not offered")
        curl("PATCH", B + "/api/v1/rollouts", token=TOKEN, json_body={"ids": [rollout_id], "paused": False})
        st, _, body = curl("GET", f"{DDI}/dev-b", show=False)
        check("deploymentBase" in js(body)["_links"], "rollout resumed -> dev-b offered again")
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN, json_body={"devices": ["nope"], "name": "x"})
        check(st == 500, "PATCH on an unknown device -> 500 (gooseBit bug: http.client.HTTPException)")
        for path in ("cancelAction/1", "installedBase/1", "confirmationBase", "softwaremodules/1/artifacts"):
            st, _, _ = curl("GET", f"{DDI}/dev-a/{path}")
            check(st == 404, f"DDI {path} not implemented -> 404")

        step("9c. the issue-9 flow: proceeding, reboot into 2.0.0, configData first, then closed/success")
        curl("GET", f"{DDI}/dev-e", show=False)
        curl("PUT", f"{DDI}/dev-e/configData", json_body={"data": {"hw_boardname": product, "hw_revision": "1.0",
                                                                     "sw_version": "1.0.0"}}, show=False)
        st, _, body = curl("GET", f"{DDI}/dev-e")
        href = js(body)["_links"]["deploymentBase"]["href"]
        curl("POST", href + "/feedback", json_body={"id": str(sw_id), "status": {
            "execution": "proceeding", "result": {"finished": "none"}, "details": ["downloading ahead of time"]}})
        curl("POST", href + "/feedback", json_body={"id": str(sw_id), "status": {
            "execution": "downloaded", "result": {"finished": "none"}, "details": ["staged; instruction written"]}})
        # new system booted: the agent re-sends configData with the new version before reporting
        curl("PUT", f"{DDI}/dev-e/configData", json_body={"data": {"hw_boardname": product, "hw_revision": "1.0",
                                                                     "sw_version": version}})
        st, _, body = curl("GET", f"{DDI}/dev-e")
        check(js(body)["_links"] == {}, "dev-e reports 2.0.0: no deploymentBase any more, but still Running")
        st, _, body = curl("GET", f"{DDI}/dev-b", show=False)
        check("deploymentBase" not in js(body)["_links"], "dev-e still holds the only slot (dev-b not offered)")
        st, _, body = curl("POST", href + "/feedback", json_body={"id": str(sw_id), "status": {
            "execution": "closed", "result": {"finished": "success"}, "details": ["2.0.0 booted and confirmed"]}})
        check(st == 200, "closed/success to the remembered action id is accepted without a fresh offer")
        st, _, body = curl("GET", f"{B}/api/v1/devices", token=TOKEN, show=False)
        d = [x for x in js(body)["devices"] if x["id"] == "dev-e"][0]
        check(d["last_state"] == "Finished" and d["sw_version"] == version, "dev-e Finished on 2.0.0")
        st, _, body = curl("GET", f"{DDI}/dev-b", show=False)
        check("deploymentBase" in js(body)["_links"], "slot freed: dev-b offered again")

        step("10. restart on the same DB with device auth (strict): TargetToken")
        srv.stop()
        srv = Server(tmp, {"GOOSEBIT_DEVICE_AUTH__ENABLE": "true", "GOOSEBIT_DEVICE_AUTH__MODE": "strict"})
        srv.start()
        B = srv.base
        DDI = B + "/DEFAULT/controller/v1"
        st, _, _ = curl("GET", f"{B}/api/v1/devices", token=TOKEN)
        check(st == 401, "old JWT invalid after restart (secret_key is random per start unless set)")
        st, _, body = curl("POST", B + "/login", form={"username": "admin@goosebit.test", "password": "s3cret-pw"})
        TOKEN = js(body)["access_token"]
        st, _, body = curl("GET", f"{B}/api/v1/devices/dev-a", token=TOKEN, show=False)
        check(js(body)["sw_version"] == version, "state survived restart (sqlite file)")
        st, _, body = curl("PUT", B + "/api/v1/devices", token=TOKEN,
                           json_body={"devices": ["dev-c"], "auth_token": "tok-dev-c-0123456789abcdef"})
        check(st == 200, "PUT /api/v1/devices pre-creates dev-c with auth_token")
        st, _, body = curl("PATCH", B + "/api/v1/devices", token=TOKEN,
                           json_body={"devices": ["dev-c"], "auth_token": "x" * 33})
        check(st == 422, "auth_token longer than 32 chars -> 422 (DB column is 32)")
        st, _, _ = curl("GET", f"{DDI}/dev-c")
        check(st == 401, "no token -> 401")
        st, _, _ = curl("GET", f"{DDI}/dev-c", headers=["Authorization: TargetToken wrong"])
        check(st == 401, "wrong TargetToken -> 401")
        st, _, _ = curl("GET", f"{DDI}/dev-c", headers=["Authorization: GatewayToken tok-dev-c-0123456789abcdef"])
        check(st == 401, "GatewayToken is not supported -> 401")
        st, _, body = curl("GET", f"{DDI}/dev-c", headers=["Authorization: TargetToken tok-dev-c-0123456789abcdef"])
        check(st == 200, "right TargetToken -> 200")
        st, _, _ = curl("GET", f"{DDI}/dev-new", headers=["Authorization: TargetToken whatever"])
        check(st == 401, "strict mode: unknown device cannot self-register")
    finally:
        step("stop server")
        srv.stop()
        if args.keep:
            print(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"\ntotal {time.time() - t_start:.1f}s")
        print(f"{CHECKS['passed']} passed, {CHECKS['failed']} failed")
    return 0 if CHECKS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
