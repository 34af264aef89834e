//! HTTP requests made with curl from inside a namespace.

use super::{Host, Lab};

impl Lab {
    /// GETs `url` from inside the namespace: (status, body), or (0, "") if no response came.
    pub fn http_get(&self, h: Host, url: &str, accept_json: bool) -> (u16, String) {
        // The status code goes after the body on a line of its own, so one process gives both.
        // --noproxy: proxy variables in the test environment must not divert lab traffic.
        let mut args = vec!["-s", "-m", "5", "--noproxy", "*", "-w", "\n%{http_code}"];
        if accept_json {
            args.extend(["-H", "Accept: application/json"]);
        }
        args.push(url);
        let out = self.exec(h, "curl", &args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        match code.trim().parse::<u16>() {
            Ok(code) if code != 0 => (code, body.to_string()),
            _ => (0, String::new()),
        }
    }
}
