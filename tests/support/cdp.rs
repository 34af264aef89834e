//! Just enough of the Chrome DevTools Protocol to act on a page as a person would: headless
//! Chromium in a lab namespace, its debugging port reached from inside that namespace, one
//! `Runtime.evaluate` over a WebSocket written by hand (no client crate for one message).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::lab::{Host, Lab, ProcHandle};

const DEBUG_PORT: u16 = 9222;

/// Headless, and with nothing to talk to but the page: no background networking, updates,
/// sync or QUIC. The status page's screenshot uses them too.
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Headless Chromium showing `url`, with its debugging port open on the namespace's loopback.
pub struct Browser<'a> {
    lab: &'a Lab,
    host: Host,
    pub handle: ProcHandle,
}

impl<'a> Browser<'a> {
    pub fn open(lab: &'a Lab, host: Host, url: &str) -> Browser<'a> {
        let profile = format!(
            "--user-data-dir={}",
            lab.tmpdir().join("cdp-chrome").display()
        );
        let port = format!("--remote-debugging-port={DEBUG_PORT}");
        let mut args = CHROMIUM_FLAGS.to_vec();
        args.extend([profile.as_str(), port.as_str(), url]);
        let handle = lab.spawn(host, "chromium", &args, &[]);
        let browser = Browser { lab, host, handle };
        // Until the page at `url` has loaded: an evaluation started on the blank page it
        // opens first would be cut off by the navigation.
        let loaded = "document.readyState === 'complete' && location.protocol === 'http:'";
        for _ in 0..300 {
            if browser.page_socket().is_some() && browser.try_evaluate(loaded) == Ok(true.into()) {
                return browser;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "chromium did not open the page:\n{}",
            lab.logs(browser.handle)
        );
    }

    fn connect(&self) -> Option<TcpStream> {
        let addr = SocketAddr::from(([127, 0, 0, 1], DEBUG_PORT));
        let stream = self
            .lab
            .tcp_connect(self.host, addr, Duration::from_secs(2))
            .ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        Some(stream)
    }

    /// The path of the page's WebSocket, from `/json/list`.
    fn page_socket(&self) -> Option<String> {
        let mut stream = self.connect()?;
        let request = format!(
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{DEBUG_PORT}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).ok()?;
        // Read to the body's length: the DevTools server may keep the connection open.
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).ok()?;
        let targets: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let page = targets.as_array()?.iter().find(|t| t["type"] == "page")?;
        let url = page["webSocketDebuggerUrl"].as_str()?;
        Some(url.split_once(&format!(":{DEBUG_PORT}"))?.1.to_owned())
    }

    /// Evaluates `expression` in the page, awaiting the promise it returns; its value as JSON.
    pub fn evaluate(&self, expression: &str) -> serde_json::Value {
        self.try_evaluate(expression)
            .unwrap_or_else(|message| panic!("{expression}: {message}"))
    }

    /// Like [`Browser::evaluate`], with the protocol's answer when it is not a value.
    fn try_evaluate(&self, expression: &str) -> Result<serde_json::Value, serde_json::Value> {
        let path = self.page_socket().expect("the page's WebSocket");
        let mut stream = self.connect().expect("chromium's debugging port");
        let upgrade = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{DEBUG_PORT}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(upgrade.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 101 "), "no WebSocket: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        let call = serde_json::json!({
            "id": 1,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        send_text(&mut stream, call.to_string().as_bytes());
        loop {
            let message: serde_json::Value =
                serde_json::from_slice(&read_frame(&mut reader)).unwrap();
            if message["id"] == 1 {
                let result = &message["result"];
                if message.get("error").is_some() || result.get("exceptionDetails").is_some() {
                    return Err(message);
                }
                return Ok(result["result"]["value"].clone());
            }
        }
    }
}

/// One masked text frame, as a client must send.
fn send_text(stream: &mut TcpStream, payload: &[u8]) {
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).expect("a short message").to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).unwrap();
}

/// The payload of the next frame from the server, which sends unmasked and unfragmented.
fn read_frame(reader: &mut impl Read) -> Vec<u8> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).unwrap();
    let len = match head[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            reader.read_exact(&mut n).unwrap();
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            reader.read_exact(&mut n).unwrap();
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    reader.read_exact(&mut payload).unwrap();
    payload
}
