//! A fake hawkBit DDI API for the fault-injecting server: what gooseBit
//! does not do (cancelAction, maintenanceWindow, skip/attempt, a
//! GatewayToken, hostile answers). It answers under
//! `/DEFAULT/controller/v1/{controllerId}`; every other path is left to
//! the file server (artifacts, with its faults). The test changes the
//! state while the agent runs and reads back every call it made.

use std::io::{self, Read, Write};
use std::sync::{Mutex, OnceLock};

/// What the server offers; `{server}` in the deployment's strings becomes
/// `http://127.0.0.1:PORT`.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// `config.polling.sleep`.
    pub sleep: String,
    /// Link `configData` in the poll until the device sends it.
    pub ask_config: bool,
    /// The `deploymentBase` body, linked from the poll while set.
    pub deployment: Option<serde_json::Value>,
    /// The action a `cancelAction` is linked for, while set.
    pub cancel: Option<String>,
    /// The `Authorization` value required (401 otherwise).
    pub auth: Option<String>,
    /// A raw poll answer to send instead of the one made from the above.
    pub raw_poll: Option<String>,
}

/// One call the agent made to the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// The path after `/DEFAULT/controller/v1/{controllerId}` (`""` for the poll).
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

impl Call {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
pub struct Api {
    pub state: Mutex<State>,
    calls: Mutex<Vec<Call>>,
    pub(super) server: OnceLock<String>,
}

pub const PREFIX: &str = "/DEFAULT/controller/v1/";

impl Api {
    pub fn new(state: State) -> Api {
        Api {
            state: Mutex::new(state),
            ..Api::default()
        }
    }

    /// Changes the state (the operator's side).
    pub fn set(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        self.server.get().cloned().unwrap_or_default()
    }

    /// Answers `head` if it is an API call; `Ok(false)` leaves it to the
    /// file server.
    pub(super) fn respond(&self, head: &str, stream: &mut (impl Read + Write)) -> io::Result<bool> {
        let mut first = head.lines().next().unwrap_or("").split(' ');
        let method = first.next().unwrap_or("").to_string();
        let target = first.next().unwrap_or("");
        let Some(rest) = target.strip_prefix(PREFIX) else {
            return Ok(false);
        };
        let rest = rest.split('?').next().unwrap_or("");
        let (controller, path) = match rest.split_once('/') {
            Some((c, p)) => (c.to_string(), format!("/{p}")),
            None => (rest.to_string(), String::new()),
        };
        let header = |name: &str| {
            head.lines().find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(1 << 20)];
        stream.read_exact(&mut body)?;
        let call = Call {
            method: method.clone(),
            path: path.clone(),
            authorization: header("authorization"),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        self.calls.lock().unwrap().push(call.clone());
        let base = format!("{}{PREFIX}{controller}", self.server());
        let (status, answer) = self.answer(&call, &base);
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/hal+json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{answer}",
            answer.len()
        )?;
        Ok(true)
    }

    fn answer(&self, call: &Call, base: &str) -> (&'static str, String) {
        let mut s = self.state.lock().unwrap();
        if s.auth.is_some() && call.authorization != s.auth {
            return ("401 Unauthorized", "{}".into());
        }
        let action = |d: &serde_json::Value| d["id"].as_str().unwrap_or("0").to_string();
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", "") => {
                if let Some(raw) = &s.raw_poll {
                    return ("200 OK", raw.clone());
                }
                let mut links = serde_json::Map::new();
                let href = |path: String| serde_json::json!({ "href": format!("{base}{path}") });
                if s.ask_config {
                    links.insert("configData".into(), href("/configData".into()));
                }
                if let Some(id) = &s.cancel {
                    links.insert("cancelAction".into(), href(format!("/cancelAction/{id}")));
                } else if let Some(d) = &s.deployment {
                    links.insert(
                        "deploymentBase".into(),
                        href(format!("/deploymentBase/{}?c=-2129030598", action(d))),
                    );
                }
                let poll = serde_json::json!({
                    "config": {"polling": {"sleep": s.sleep}},
                    "_links": links,
                });
                ("200 OK", poll.to_string())
            }
            ("PUT", "/configData") => {
                s.ask_config = false;
                ("200 OK", String::new())
            }
            ("GET", p) if p.starts_with("/deploymentBase/") => match &s.deployment {
                Some(d) => ("200 OK", d.to_string().replace("{server}", &self.server())),
                None => ("404 Not Found", "{}".into()),
            },
            ("POST", p) if p.starts_with("/deploymentBase/") && p.ends_with("/feedback") => {
                if call.json()["status"]["execution"] == "closed" {
                    s.deployment = None;
                }
                ("200 OK", String::new())
            }
            ("GET", p) if p.starts_with("/cancelAction/") => match &s.cancel {
                Some(id) => (
                    "200 OK",
                    serde_json::json!({"id": id, "cancelAction": {"stopId": id}}).to_string(),
                ),
                None => ("404 Not Found", "{}".into()),
            },
            ("POST", p) if p.starts_with("/cancelAction/") && p.ends_with("/feedback") => {
                let status = &call.json()["status"];
                if status["execution"] == "closed" && status["result"]["finished"] == "success" {
                    s.cancel = None;
                    s.deployment = None;
                } else if status["execution"] == "rejected" {
                    s.cancel = None;
                }
                ("200 OK", String::new())
            }
            _ => ("404 Not Found", "{}".into()),
        }
    }
}
