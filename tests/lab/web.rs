//! A real web server on-prem: nginx serving plain HTTP and HTTPS with certificates from a lab CA
//! that the test makes with openssl: a good vhost, one whose certificate expired, and one whose
//! certificate names another host. Every file lives in the lab's temp dir; nginx runs in the
//! foreground and stops with the lab.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{preflight, Host, Lab, ProcHandle, ONPREM_IP};

/// Where nginx listens, on port 80 and 443.
pub const WEB_IP: Ipv4Addr = ONPREM_IP;
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
        self.leaf(&dir, "good", GOOD_NAME, GOOD_NAME, None);
        self.leaf(
            &dir,
            "expired",
            EXPIRED_NAME,
            EXPIRED_NAME,
            Some(("20200101000000Z", "20210101000000Z")),
        );
        self.leaf(&dir, "wrong", WRONG_NAME, OTHER_NAME, None);

        let d = dir.display();
        let vhost = |name: &str, cert: &str, default: &str| {
            format!(
                "server {{
                   listen {WEB_IP}:443 ssl{default};
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
                 location = /healthz {{ default_type application/json; return 200 '{HEALTHY_BODY}'; }}
                 location = {DOWN_PATH} {{ return 503; }}
                 location / {{ return 404; }}
               }}
               {}{}{}
             }}\n",
            vhost(GOOD_NAME, "good", " default_server"),
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
        for port in [80, 443] {
            let addr = SocketAddr::from((WEB_IP, port));
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

    /// A self-signed CA: returns its certificate's path.
    fn lab_ca(&self, dir: &std::path::Path) -> PathBuf {
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
subjectAltName = DNS:$ENV::SAN
EOF"
            ),
        );
        dir.join("ca.pem")
    }

    /// A certificate for `cn` naming `san`, signed by the lab CA, valid from now for 30 days or
    /// over `dates` (`YYYYMMDDHHMMSSZ` start and end).
    fn leaf(
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
                 SAN={san} openssl ca -batch -config ca.cnf -extensions leaf -cert ca.pem \
                   -keyfile ca.key -in {file}.csr -out {file}.pem -notext {validity} 2>&1"
            ),
        );
    }
}
