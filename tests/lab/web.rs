//! A real web server on-prem: nginx serving plain HTTP and HTTPS with certificates from a lab CA
//! that the test makes with openssl: a good vhost, one whose certificate expired, and one whose
//! certificate names another host, each on the on-prem host's IPv4 and IPv6 address; and the faults a deploy makes: the good vhost presenting
//! another certificate, a service answering 503. Every file lives in the lab's temp dir; nginx
//! runs in the foreground and stops with the lab.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{preflight, Host, Lab, ProcHandle, ONPREM_IP, ONPREM_IP6};

/// Where nginx listens, on port 80 and 443.
pub const WEB_IP: Ipv4Addr = ONPREM_IP;
/// Where nginx listens over IPv6, on the same ports and vhosts.
pub const WEB_IP6: Ipv6Addr = ONPREM_IP6;
/// The vhost with a good certificate (also the default server).
pub const GOOD_NAME: &str = "api.corp.example";
/// The vhost whose certificate expired in 2021.
pub const EXPIRED_NAME: &str = "expired.corp.example";
/// The vhost whose certificate is for [`OTHER_NAME`].
pub const WRONG_NAME: &str = "wrong.corp.example";
pub const OTHER_NAME: &str = "other.corp.example";
/// The body of `/healthz` on every vhost.
pub const HEALTHY_BODY: &str = r#"{"status":"ok"}"#;
/// The path that answers 503.
pub const DOWN_PATH: &str = "/down";
/// The path that serves the file [`Lab::web_app`] writes, and 503 while there is none.
pub const APP_PATH: &str = "/app";

/// What the web server's tests need to know.
pub struct Web {
    pub proc: ProcHandle,
    /// The lab CA's certificate, PEM.
    pub ca_file: PathBuf,
}

/// Whether nginx and openssl can run here; like [`super::dns::dnsmasq_available`].
pub fn nginx_available(test_name: &str) -> bool {
    let found = ["nginx", "openssl"]
        .iter()
        .all(|tool| Command::new(tool).arg("-v").output().is_ok());
    if !found && preflight::under_ci() {
        panic!("{test_name}: nginx and openssl are required under CI (see .ci/packages.txt)");
    }
    if !found {
        eprintln!("skipping {test_name}: nginx or openssl not found (apt-get install nginx-light)");
    }
    found
}

impl Lab {
    /// Makes the CA and the three certificates, starts nginx on-prem, and returns once it
    /// accepts connections on port 443.
    pub fn onprem_web(&self) -> Web {
        let dir = self.tmpdir().join("web");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let ca_file = self.lab_ca(&dir);
        self.leaf(&dir, "good", GOOD_NAME, &format!("DNS:{GOOD_NAME}"), None);
        self.leaf(
            &dir,
            "expired",
            EXPIRED_NAME,
            &format!("DNS:{EXPIRED_NAME}"),
            Some(("20200101000000Z", "20210101000000Z")),
        );
        self.leaf(
            &dir,
            "wrong",
            WRONG_NAME,
            &format!("DNS:{OTHER_NAME}"),
            None,
        );
        copy_cert(&dir, "good");
        std::fs::create_dir_all(dir.join("www")).unwrap_or_else(|e| panic!("www: {e}"));
        self.web_app(Some(HEALTHY_BODY));

        let d = dir.display();
        let vhost = |name: &str, cert: &str, default: &str| {
            format!(
                "server {{
                   listen {WEB_IP}:443 ssl{default};
                   listen [{WEB_IP6}]:443 ssl{default};
                   server_name {name};
                   ssl_protocols TLSv1.2 TLSv1.3;
                   ssl_certificate {d}/{cert}.pem;
                   ssl_certificate_key {d}/{cert}.key;
                   location = /healthz {{ default_type application/json; return 200 '{HEALTHY_BODY}'; }}
                   location = {DOWN_PATH} {{ return 503; }}
                   location / {{ return 404; }}
                 }}\n"
            )
        };
        let app = format!(
            "location = {APP_PATH} {{ root {d}/www; default_type application/json; \
             try_files /app.json =503; }}"
        );
        let conf = format!(
            "daemon off;
             master_process on;
             worker_processes 1;
             user root;
             pid {d}/nginx.pid;
             error_log stderr info;
             events {{ worker_connections 64; }}
             http {{
               access_log {d}/access.log;
               client_body_temp_path {d}/body;
               proxy_temp_path {d}/proxy;
               fastcgi_temp_path {d}/fastcgi;
               uwsgi_temp_path {d}/uwsgi;
               scgi_temp_path {d}/scgi;
               server {{
                 listen {WEB_IP}:80 default_server;
                 listen [{WEB_IP6}]:80 default_server;
                 location = /healthz {{ default_type application/json; return 200 '{HEALTHY_BODY}'; }}
                 location = {DOWN_PATH} {{ return 503; }}
                 {app}
                 location / {{ return 404; }}
               }}
               {}{}{}
             }}\n",
            vhost(GOOD_NAME, "presented", " default_server"),
            vhost(EXPIRED_NAME, "expired", ""),
            vhost(WRONG_NAME, "wrong", ""),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap_or_else(|e| panic!("{}: {e}", conf_path.display()));
        let conf_path = conf_path.display().to_string();
        let prefix = format!("{d}/");
        let proc = self.spawn(
            Host::Onprem,
            "nginx",
            &["-e", "stderr", "-p", &prefix, "-c", &conf_path],
            &[],
        );
        let ips: [IpAddr; 2] = [WEB_IP.into(), WEB_IP6.into()];
        for addr in ips
            .iter()
            .flat_map(|&ip| [80, 443].map(|port| SocketAddr::from((ip, port))))
        {
            self.wait_until(&format!("nginx on {addr}"), Duration::from_secs(10), || {
                if let Some(status) = self.try_status(proc) {
                    panic!("nginx exited ({status}):\n{}", self.logs(proc));
                }
                self.tcp_connect(Host::Onprem, addr, Duration::from_millis(200))
                    .is_ok()
            });
        }
        Web { proc, ca_file }
    }

    /// The good vhost presents the certificate made as `cert` (`good`, `expired`, `wrong`) from
    /// now on, as after a botched renewal: nginx rereads it on a reload.
    pub fn web_present(&self, cert: &str) {
        let dir = self.tmpdir().join("web");
        copy_cert(&dir, cert);
        let d = dir.display();
        self.must(
            Host::Onprem,
            "nginx",
            &[
                "-e",
                "stderr",
                "-p",
                &format!("{d}/"),
                "-c",
                &format!("{d}/nginx.conf"),
                "-s",
                "reload",
            ],
        );
    }

    /// What [`APP_PATH`] serves: `body` with 200, or 503 for `None`, as a service whose backend
    /// is down. Takes effect on the next request.
    pub fn web_app(&self, body: Option<&str>) {
        let file = self.tmpdir().join("web/www/app.json");
        let done = match body {
            Some(body) => std::fs::write(&file, body),
            None => std::fs::remove_file(&file),
        };
        done.unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }

    /// Stops (`SIGSTOP`) or continues nginx, master and workers: while stopped, connections
    /// still complete in the kernel and their bytes wait unread.
    pub fn pause_web(&self, web: &Web, paused: bool) {
        let master = self.pid(web.proc).to_string();
        let workers = Command::new("pgrep")
            .args(["-P", &master])
            .output()
            .expect("pgrep");
        let mut pids = vec![master];
        pids.extend(
            String::from_utf8_lossy(&workers.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        let signal = if paused { "-STOP" } else { "-CONT" };
        let out = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .output()
            .expect("kill");
        assert!(out.status.success(), "kill {signal} {pids:?}: {out:?}");
    }

    /// A self-signed CA in `dir`, for [`Lab::leaf`]: returns its certificate's path.
    pub(super) fn lab_ca(&self, dir: &std::path::Path) -> PathBuf {
        let d = dir.display();
        self.must_sh(
            Host::Onprem,
            &format!(
                "set -e; cd {d}
                 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                   -keyout ca.key -out ca.pem -days 3650 -subj '/CN=hybridprobe lab CA' \
                   -addext basicConstraints=critical,CA:TRUE \
                   -addext keyUsage=critical,keyCertSign,cRLSign 2>&1
                 : > index.txt; echo 01 > serial
                 cat > ca.cnf <<'EOF'
[ca]
default_ca = lab
[lab]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = $ENV::SAN
EOF"
            ),
        );
        dir.join("ca.pem")
    }

    /// A certificate for `cn` with the subjectAltName `san` (`DNS:a.example,IP:198.18.1.4`),
    /// signed by the lab CA in `dir`, as `dir/{file}.pem` and `.key`, valid from now for 30 days
    /// or over `dates` (`YYYYMMDDHHMMSSZ` start and end).
    pub(super) fn leaf(
        &self,
        dir: &std::path::Path,
        file: &str,
        cn: &str,
        san: &str,
        dates: Option<(&str, &str)>,
    ) {
        let d = dir.display();
        let validity = match dates {
            Some((start, end)) => format!("-startdate {start} -enddate {end}"),
            None => "-days 30".to_owned(),
        };
        self.must_sh(
            Host::Onprem,
            &format!(
                "set -e; cd {d}
                 openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                   -keyout {file}.key -out {file}.csr -subj '/CN={cn}' 2>&1
                 SAN='{san}' openssl ca -batch -config ca.cnf -extensions leaf -cert ca.pem \
                   -keyfile ca.key -in {file}.csr -out {file}.pem -notext {validity} 2>&1"
            ),
        );
    }
}

/// `cert`'s certificate and key as the good vhost's `presented` ones.
fn copy_cert(dir: &std::path::Path, cert: &str) {
    for ext in ["pem", "key"] {
        let (from, to) = (
            dir.join(format!("{cert}.{ext}")),
            dir.join(format!("presented.{ext}")),
        );
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}
