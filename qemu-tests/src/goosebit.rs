//! A real gooseBit (PyPI `goosebit`, a hawkBit-DDI server) for tests: a
//! venv under `target/` with the pinned release, one server per test in a
//! temp dir (its SQLite database and artifacts there), bound to 127.0.0.1
//! only, stopped by its PID when dropped. Spoken to with `curl`.
//!
//! The steps are those of gooseBit's own container image: settings in a
//! YAML file named by `GOOSEBIT_SETTINGS`, `aerich upgrade` for the schema,
//! then `uvicorn goosebit:app --host 127.0.0.1` (not `python -m goosebit`,
//! which listens on every interface).

use crate::artifacts;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The gooseBit release the tests run.
pub const VERSION: &str = "0.2.12";

/// The venv with gooseBit, made on first use: `target/goosebit-venv`.
/// Its dependencies are pinned by `qemu-tests/goosebit/constraints.txt`.
pub fn venv() -> Result<PathBuf, String> {
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MADE.get_or_init(make_venv).clone()
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn make_venv() -> Result<PathBuf, String> {
    let venv = artifacts::workspace().join("target/goosebit-venv");
    let python = venv.join("bin/python");
    let installed = Command::new(&python)
        .args([
            "-c",
            &format!("import importlib.metadata as m; assert m.version('goosebit') == '{VERSION}'"),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(venv);
    }
    run(
        Command::new("python3").args(["-c", "import ensurepip, venv"]),
        "python3 with venv and ensurepip (install them: apt-get install python3 python3-venv)",
    )?;
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv (install it: apt-get install python3-venv)",
        )?;
    }
    let constraints = artifacts::workspace().join("qemu-tests/goosebit/constraints.txt");
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-c"])
            .arg(&constraints)
            .arg(format!("goosebit=={VERSION}")),
        &format!("pip install goosebit=={VERSION} (from PyPI)"),
    )?;
    Ok(venv)
}

/// A running gooseBit, stopped by its PID when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// Its settings, database, artifacts and `server.log`.
    pub dir: tempfile::TempDir,
    token: String,
}

/// A reply: the HTTP status and the body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Server {
    /// Starts gooseBit on a free port of 127.0.0.1 and creates its admin.
    pub fn start() -> Server {
        Server::start_with("")
    }

    /// [`Server::start`] with more settings: YAML lines added to its
    /// `goosebit.yaml` (e.g. `max_concurrent_updates: 1`).
    pub fn start_with(settings_yaml: &str) -> Server {
        let venv = venv().unwrap_or_else(|e| panic!("gooseBit: {e}"));
        let dir = tempfile::tempdir_in(artifacts::workspace().join("target")).unwrap();
        let d = dir.path();
        let site = run(
            Command::new(venv.join("bin/python")).args([
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ]),
            "the venv's site-packages",
        )
        .unwrap_or_else(|e| panic!("gooseBit: {e}"));
        let settings = d.join("goosebit.yaml");
        std::fs::write(
            &settings,
            format!(
                "db_uri: sqlite:///{0}/db.sqlite3\nartifacts_dir: {0}/artifacts\n\
                 poll_time: '00:00:05'\nlogging:\n  version: 1\n  disable_existing_loggers: false\n  \
                 handlers: {{console: {{class: logging.StreamHandler}}}}\n  \
                 root: {{level: INFO, handlers: [console]}}\n{1}",
                d.display(),
                settings_yaml
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("aerich.toml"),
            format!(
                "[tool.aerich]\ntortoise_orm = \"goosebit.db.config.TORTOISE_CONF\"\n\
                 location = \"{}/goosebit/db/migrations\"\nsrc_folder = \".\"\n",
                site.trim()
            ),
        )
        .unwrap();
        run(
            Command::new(venv.join("bin/aerich"))
                .args(["--config", "aerich.toml", "upgrade"])
                .current_dir(d)
                .env("GOOSEBIT_SETTINGS", &settings),
            "gooseBit's database migration (aerich upgrade)",
        )
        .unwrap_or_else(|e| panic!("gooseBit: {e}"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = std::fs::File::create(d.join("server.log")).unwrap();
        let child = Command::new(venv.join("bin/python"))
            .args(["-m", "uvicorn", "goosebit:app", "--host", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .current_dir(d)
            .env("GOOSEBIT_SETTINGS", &settings)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("gooseBit: cannot start uvicorn: {e}"));
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            token: String::new(),
        };
        server.wait_ready();
        let setup = server.request(
            "POST",
            "/setup",
            &[
                "--data-urlencode",
                "username=admin@reimage.test",
                "--data-urlencode",
                "password=reimage-test-pw",
            ],
        );
        assert_eq!(setup.status, 200, "gooseBit POST /setup: {}", setup.body);
        server.token = setup.json()["access_token"]
            .as_str()
            .expect("a token")
            .to_string();
        server
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gooseBit exited ({status}) at start:\n{}", self.log());
            }
            let reply = self.request("GET", "/login", &[]);
            if matches!(reply.status, 200 | 302) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "gooseBit did not answer within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `curl -X METHOD BASE+PATH ARGS`, with the admin's token once there is one.
    pub fn request(&self, method: &str, path: &str, args: &[&str]) -> Reply {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "60",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ]);
        if !self.token.is_empty() {
            cmd.arg("-H")
                .arg(format!("Authorization: Bearer {}", self.token));
        }
        let out = cmd
            .args(args)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Reply {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
        }
    }

    /// Uploads a file as new software (`PUT /api/v1/software`).
    pub fn upload(&self, file: &Path) -> Reply {
        self.request(
            "PUT",
            "/api/v1/software",
            &["-F", &format!("file=@{}", file.display())],
        )
    }

    /// `PUT PATH` with a JSON body.
    pub fn put_json(&self, path: &str, json: &serde_json::Value) -> Reply {
        self.request(
            "PUT",
            path,
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                &json.to_string(),
            ],
        )
    }

    /// The device `id` as the list `GET /api/v1/devices` shows it (the
    /// one view that works in every mode), or `Null` when it is unknown.
    pub fn device(&self, id: &str) -> serde_json::Value {
        let list = self.request("GET", "/api/v1/devices", &[]);
        assert_eq!(list.status, 200, "{}", list.body);
        list.json()["devices"]
            .as_array()
            .expect("a device list")
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// The device's log (`details` of its feedback) and progress.
    pub fn device_log(&self, id: &str) -> (String, Option<u64>) {
        let reply = self.request("GET", &format!("/api/v1/devices/{id}/log"), &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        (
            json["log"].as_str().unwrap_or_default().to_string(),
            json["progress"].as_u64(),
        )
    }

    /// Uploads a bundle and makes it the rollout of feed `default`; its id.
    pub fn roll_out(&self, bundle: &Path) -> u64 {
        let uploaded = self.upload(bundle);
        assert_eq!(uploaded.status, 200, "{}\n{}", uploaded.body, self.log());
        let id = uploaded.json()["id"].as_u64().expect("a software id");
        let rollout = self.put_json(
            "/api/v1/rollouts",
            &serde_json::json!({"name": "rollout", "feed": "default", "software_id": id}),
        );
        assert_eq!(rollout.status, 200, "{}", rollout.body);
        id
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
