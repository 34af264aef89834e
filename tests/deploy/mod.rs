//! The manifests in deploy/, rendered with `kubectl kustomize` (or the Helm chart, through
//! `.ci/helm.py`), and run in the namespace lab as a kubelet would run them: the container's
//! command, args and env (downward API values replaced by lab values), its user and
//! capabilities (through `setpriv`), the pod's sysctls, the ConfigMap as files, and the node:
//! its PID 1 played by a process in the lab's node namespace when the pod has hostPID, else its
//! hostPath volumes bind-mounted at their mountPaths in a private mount namespace, in a private
//! PID namespace, as the kubelet and the container runtime would (the lab's node directories
//! live under [`node_root`]). The shipped configs' example addresses are the lab's, and
//! [`ConfigTargets`] starts what they talk to.

// Each integration-test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::lab::dns::{self, Forward, CLUSTER_DNS_IP};
use crate::lab::web;
use crate::lab::{Host, Lab, ProcHandle, NODE_IP, ONPREM_IP, POD_IP};
use crate::support::BIN;

/// Where the Dockerfile puts the binary; the manifests must run exactly that.
pub const IMAGE_BINARY: &str = "/usr/local/bin/hybridprobe";
/// The downward API's values in the lab.
pub const LAB_NODE_NAME: &str = "lab-node";
/// Where a node pins its network namespace for the DaemonSet (docs/privileges.md), and the
/// directory the DaemonSet's hostPath volume mounts.
pub const NODE_PINNED_NETNS: &str = "/run/hybridprobe/netns";
/// The node's systemd-resolved directory: its resolv.conf lists the upstream servers.
pub const NODE_RESOLVE_DIR: &str = "/run/systemd/resolve";
/// Container paths for the node's files, by the convention for what a host hands a container.
pub const HOST_MOUNTS_UNDER: &str = "/run/host/";

/// The lab node's root for the paths of hostPath volumes: `path` on the node is
/// `node_root(lab)/path` here.
pub fn node_root(lab: &Lab) -> PathBuf {
    lab.tmpdir().join("node")
}

fn on_node(lab: &Lab, path: &str) -> PathBuf {
    node_root(lab).join(path.trim_start_matches('/'))
}

/// Every object of a rendered kustomization (or a plain manifest file).
pub struct Manifests {
    pub source: String,
    pub objects: Vec<Value>,
}

impl Manifests {
    /// `kubectl kustomize deploy/<dir>`; `None` (after one line saying why) when kubectl is
    /// missing outside CI. Under CI a missing kubectl fails the test.
    pub fn render(dir: &str) -> Option<Manifests> {
        let path = repo_path(dir);
        let out = match Command::new("kubectl").arg("kustomize").arg(&path).output() {
            Ok(out) => out,
            Err(e) => return skip(&format!("kubectl not runnable ({e})")),
        };
        assert!(
            out.status.success(),
            "kubectl kustomize {dir} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(Manifests::parse(dir, &String::from_utf8_lossy(&out.stdout)))
    }

    /// The Helm chart rendered with `--set` expressions `sets`, through `.ci/helm.py` as
    /// .ci/checks/helm.sh renders it; `None` (after one line saying why) when python3 or
    /// helm-python-sdk is missing outside CI. Under CI a missing SDK fails the test.
    pub fn helm(sets: &[&str]) -> Option<Manifests> {
        let mut command = Command::new("python3");
        command
            .arg(repo_path(".ci/helm.py"))
            .arg("template")
            .arg(repo_path(HELM_CHART));
        for set in sets {
            command.arg("--set").arg(set);
        }
        let out = match command.output() {
            Ok(out) => out,
            Err(e) => return skip(&format!("python3 not runnable ({e})")),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(HELM_PY_MISSING_SDK) {
            return skip(stderr.trim());
        }
        assert!(
            out.status.success(),
            "rendering {HELM_CHART} with {sets:?} failed:\n{stderr}"
        );
        let source = format!("{HELM_CHART} {sets:?}");
        Some(Manifests::parse(
            &source,
            &String::from_utf8_lossy(&out.stdout),
        ))
    }

    /// A plain multi-document YAML file under the repository root.
    pub fn file(path: &str) -> Manifests {
        let full = repo_path(path);
        let text = std::fs::read_to_string(&full)
            .unwrap_or_else(|e| panic!("reading {}: {e}", full.display()));
        Manifests::parse(path, &text)
    }

    fn parse(source: &str, text: &str) -> Manifests {
        use serde::Deserialize;
        let objects = serde_norway::Deserializer::from_str(text)
            .map(|doc| {
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{source}: bad YAML: {e}"))
            })
            .filter(|v| !v.is_null())
            .collect();
        Manifests {
            source: source.to_owned(),
            objects,
        }
    }

    /// The one object of `kind`; panics if there is none or several.
    pub fn one(&self, kind: &str) -> &Value {
        let found: Vec<&Value> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "{}: expected one {kind}", self.source);
        found[0]
    }

    pub fn pod_spec(&self, kind: &str) -> &Value {
        &self.one(kind)["spec"]["template"]["spec"]
    }

    /// The text of `key` in the ConfigMap called `name`.
    pub fn config_map_file(&self, name: &str, key: &str) -> String {
        let cm = self
            .objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{}: no ConfigMap {name}", self.source));
        str_of(&cm["data"][key]).to_owned()
    }
}

/// The chart that `Manifests::helm` renders.
pub const HELM_CHART: &str = "deploy/helm/hybridprobe";
/// `.ci/helm.py`'s exit status when helm-python-sdk is not installed.
const HELM_PY_MISSING_SDK: i32 = 3;

/// A render tool is missing: fails under CI, else says why the test is skipped.
fn skip<T>(why: &str) -> Option<T> {
    let why = format!("{why}; see .ci/requirements.txt");
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{why}");
    }
    eprintln!("skipping: {why} (set CI=true to fail instead)");
    None
}

/// A path under the repository root (tests run from it, but say so explicitly).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

/// The container of a pod spec, how it would be started, mapped into the lab.
pub struct PodRun {
    /// The binary, then its arguments, exactly as the container runs them (mapped paths).
    pub argv: Vec<String>,
    /// The whole environment the container sees from its spec.
    pub env: Vec<(String, String)>,
    /// `setpriv` options for the container's user, group, capabilities and no_new_privs.
    pub privileges: Vec<String>,
    /// `(path, value)` sysctls of the pod, to set in its network namespace.
    pub sysctls: Vec<(String, String)>,
    /// The container's HTTP port by name, for its probes.
    pub ports: Vec<(String, u16)>,
    /// The stand-in for the node's PID 1 when the pod has hostPID.
    pub host_init: Option<ProcHandle>,
    /// `(path on the lab node, mountPath)` of the hostPath volumes, mounted read-only in the
    /// container's private mount namespace. Without hostPID the container also gets its own
    /// PID namespace, so its /proc/1 is itself.
    pub host_mounts: Vec<(PathBuf, String)>,
    /// Whether the lab node pins its network namespace at [`NODE_PINNED_NETNS`] (the setup step
    /// docs/privileges.md describes), for a pod that mounts it.
    pub node_pins_netns: bool,
    /// The lab node's network namespace file.
    node_netns: PathBuf,
}

impl PodRun {
    /// Prepares `pod_spec`'s only container to run in the lab: writes its ConfigMap volumes to
    /// files, and with hostPID starts a stand-in for the node's PID 1 in the node namespace.
    pub fn prepare(lab: &Lab, manifests: &Manifests, pod_spec: &Value) -> PodRun {
        let containers = pod_spec["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container per pod");
        let container = &containers[0];

        let host_pid = pod_spec["hostPID"].as_bool().unwrap_or(false);
        let host_init = host_pid.then(|| lab.spawn(Host::Node, "sleep", &["infinity"], &[]));
        let proc1 = host_init.map(|h| format!("/proc/{}/", lab.pid(h)));

        let mut mounts: Vec<(String, String)> = Vec::new();
        let mut host_mounts = Vec::new();
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                mount.get("subPath").is_none(),
                "a subPath mount never sees ConfigMap updates: {mount}"
            );
            let volume = pod_spec["volumes"]
                .as_array()
                .and_then(|vs| vs.iter().find(|v| v["name"] == mount["name"]))
                .unwrap_or_else(|| panic!("no volume for {mount}"));
            if let Some(host_path) = volume["hostPath"]["path"].as_str() {
                host_mounts.push(host_mount(lab, host_path, volume, mount));
                continue;
            }
            let name = str_of(&volume["configMap"]["name"]);
            let mount_path = str_of(&mount["mountPath"]).to_owned();
            let dir = lab
                .tmpdir()
                .join(format!("volume-{}", str_of(&mount["name"])));
            std::fs::create_dir_all(&dir).expect("volume dir");
            let cm = manifests
                .objects
                .iter()
                .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no ConfigMap {name}"));
            for (key, text) in cm["data"].as_object().expect("ConfigMap data") {
                let text = str_of(text);
                let text = map_proc1(text, proc1.as_deref(), key);
                std::fs::write(dir.join(key), text).expect("write ConfigMap file");
            }
            mounts.push((mount_path, dir.display().to_string()));
        }
        let map_path = |arg: &str| {
            mounts
                .iter()
                .find_map(|(from, to)| {
                    arg.strip_prefix(from.as_str())
                        .map(|rest| format!("{to}{rest}"))
                })
                .unwrap_or_else(|| arg.to_owned())
        };

        let mut env: Vec<(String, String)> = Vec::new();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = str_of(&var["name"]).to_owned();
            let value = if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                downward(field)
            } else {
                let value = expand(var["value"].as_str().unwrap_or_default(), &env);
                map_proc1(&value, proc1.as_deref(), &name)
            };
            env.push((name, value));
        }

        let command: Vec<String> = strings(&container["command"]);
        assert_eq!(
            command.first().map(String::as_str),
            Some(IMAGE_BINARY),
            "the container must run the image's binary"
        );
        let mut argv = vec![BIN.to_owned()];
        argv.extend(
            command[1..]
                .iter()
                .chain(&strings(&container["args"]))
                .map(|a| map_path(&expand(a, &env))),
        );

        let pod_sc = &pod_spec["securityContext"];
        let sc = &container["securityContext"];
        let pick = |key: &str| sc[key].as_i64().or_else(|| pod_sc[key].as_i64());
        let uid = pick("runAsUser").expect("runAsUser must be explicit");
        let gid = pick("runAsGroup").expect("runAsGroup must be explicit");
        let drop = strings(&sc["capabilities"]["drop"]);
        assert_eq!(drop, ["ALL"], "capabilities must drop ALL");
        let add: Vec<String> = strings(&sc["capabilities"]["add"])
            .iter()
            .map(|c| format!("+{}", c.to_lowercase()))
            .collect();
        let mut privileges = vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            format!(
                "--bounding-set=-all{}",
                add.iter().map(|c| format!(",{c}")).collect::<String>()
            ),
            "--inh-caps=-all".to_owned(),
        ];
        if sc["allowPrivilegeEscalation"] == false {
            privileges.push("--no-new-privs".to_owned());
        }
        let sysctls = pod_sc["sysctls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    str_of(&s["name"]).to_owned(),
                    str_of(&s["value"]).to_owned(),
                )
            })
            .collect();
        let ports = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let port = p["containerPort"].as_u64().expect("containerPort") as u16;
                (p["name"].as_str().unwrap_or_default().to_owned(), port)
            })
            .collect();
        PodRun {
            argv,
            env,
            privileges,
            sysctls,
            ports,
            host_init,
            host_mounts,
            node_pins_netns: true,
            node_netns: lab.ns_path(Host::Node),
        }
    }

    /// The container's own pid: past the `unshare` that stands in for the runtime, if any.
    pub fn container_pid(&self, lab: &Lab, handle: ProcHandle) -> u32 {
        let pid = lab.pid(handle);
        if self.host_init.is_some() {
            return pid;
        }
        let children = format!("/proc/{pid}/task/{pid}/children");
        let text = std::fs::read_to_string(&children).unwrap_or_else(|e| panic!("{children}: {e}"));
        text.split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("the runtime stand-in {pid} has no child"))
    }

    /// Applies the pod's sysctls to `h` and starts the container there, as the kubelet would.
    pub fn spawn(&self, lab: &Lab, h: Host) -> ProcHandle {
        self.spawn_with(lab, h, &self.privileges)
    }

    /// [`PodRun::spawn`] with other `privileges` (`setpriv` options).
    pub fn spawn_with(&self, lab: &Lab, h: Host, privileges: &[String]) -> ProcHandle {
        self.apply_sysctls(lab, h);
        let args = self.command_line(&self.argv, privileges);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(h, args[0], &args[1..], &[])
    }

    /// Runs the container as specified to completion in `h` (a Job's container).
    pub fn run(&self, lab: &Lab, h: Host) -> std::process::Output {
        let args: Vec<&str> = self.argv[1..].iter().map(String::as_str).collect();
        self.run_with(lab, h, &args, &self.privileges)
    }

    /// Sets `name` as `kubectl set env` would.
    pub fn set_env(&mut self, name: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_owned(),
            None => self.env.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Runs the container's binary with other arguments, the same env, and `privileges`
    /// (`setpriv` options) to completion in `h`.
    pub fn run_with(
        &self,
        lab: &Lab,
        h: Host,
        args: &[&str],
        privileges: &[String],
    ) -> std::process::Output {
        self.apply_sysctls(lab, h);
        let argv: Vec<String> = std::iter::once(self.argv[0].clone())
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        let line = self.command_line(&argv, privileges);
        let line: Vec<&str> = line.iter().map(String::as_str).collect();
        lab.exec(h, line[0], &line[1..])
    }

    /// `env -i VARS setpriv OPTIONS -- ARGV`: nothing from the test's own environment leaks in.
    /// Without hostPID, inside [`PodRun::runtime`]'s namespaces.
    fn command_line(&self, argv: &[String], privileges: &[String]) -> Vec<String> {
        let mut line = match self.host_init {
            Some(_) => Vec::new(),
            None => self.runtime(),
        };
        line.extend(["env".to_owned(), "-i".to_owned()]);
        line.extend(self.env.iter().map(|(k, v)| format!("{k}={v}")));
        line.push("setpriv".to_owned());
        line.extend(privileges.iter().cloned());
        line.push("--".to_owned());
        line.extend(argv.iter().cloned());
        line
    }

    /// The value after `flag` in the container's arguments (paths already mapped).
    pub fn arg(&self, flag: &str) -> &str {
        self.argv
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.argv.get(i + 1))
            .unwrap_or_else(|| panic!("no {flag} in {:?}", self.argv))
    }

    /// What the kubelet and the runtime do before the container starts, as a command prefix:
    /// a private PID namespace (its /proc/1 is the container) and mount namespace, where the
    /// node has pinned its namespace (a bind mount onto a file, as `ip netns` pins one) and each
    /// hostPath volume is bind-mounted read-only at its mountPath. A tmpfs over /run holds the
    /// mountPaths, which all lie under /run/host/, and hides the test machine's own.
    fn runtime(&self) -> Vec<String> {
        let mut script = vec!["set -e".to_owned()];
        let pin = self
            .host_mounts
            .iter()
            .find_map(|(node, _)| pinned_file(node))
            .filter(|_| self.node_pins_netns);
        if let Some(file) = pin {
            script.push(format!(
                "touch {file} && mount --bind {} {file}",
                self.node_netns.display(),
                file = file.display()
            ));
        }
        script.push("mount -t tmpfs -o mode=0755 lab-run /run".to_owned());
        for (node, mount_path) in &self.host_mounts {
            script.push(format!(
                "mkdir -p {mount_path} && mount --rbind {} {mount_path} \
                 && mount -o remount,bind,ro {mount_path}",
                node.display()
            ));
        }
        script.push(r#"exec "$@""#.to_owned());
        let script = script.join("\n");
        assert!(
            !script.contains('\''),
            "paths the script can quote: {script}"
        );
        [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            &script,
            "runtime",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn apply_sysctls(&self, lab: &Lab, h: Host) {
        for (name, value) in &self.sysctls {
            lab.must(h, "sysctl", &["-qw", &format!("{name}={value}")]);
        }
    }

    /// The same run with `capability` left out of the bounding set.
    pub fn without_capability(&self, capability: &str) -> Vec<String> {
        let cap = format!(",+{}", capability.to_lowercase());
        self.privileges
            .iter()
            .map(|p| p.replace(&cap, ""))
            .collect()
    }

    pub fn port(&self, name_or_number: &Value) -> u16 {
        if let Some(n) = name_or_number.as_u64() {
            return n as u16;
        }
        let name = str_of(name_or_number);
        self.ports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no container port named {name}"))
    }

    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A hostPath volume of the lab node: the directory made as `DirectoryOrCreate` would.
fn host_mount(lab: &Lab, host_path: &str, volume: &Value, mount: &Value) -> (PathBuf, String) {
    let mount_path = str_of(&mount["mountPath"]).to_owned();
    assert!(
        mount_path.starts_with(HOST_MOUNTS_UNDER),
        "the node's files belong under {HOST_MOUNTS_UNDER}: {mount}"
    );
    assert_eq!(
        mount["readOnly"], true,
        "the node's files, read-only: {mount}"
    );
    assert_eq!(
        volume["hostPath"]["type"], "DirectoryOrCreate",
        "a node without the directory must still run the pod: {volume}"
    );
    let dir = on_node(lab, host_path);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (dir, mount_path)
}

/// The file the node pins its namespace onto, when `dir` (on the lab node) holds it.
fn pinned_file(dir: &Path) -> Option<PathBuf> {
    let pinned = Path::new(NODE_PINNED_NETNS);
    let name = pinned.file_name()?;
    dir.ends_with(pinned.parent()?.strip_prefix("/").ok()?)
        .then(|| dir.join(name))
}

/// `text` with /proc/1/ as the stand-in init's /proc/PID/; without hostPID, /proc/1 is the
/// container itself, so the shipped files must not name it.
fn map_proc1(text: &str, proc1: Option<&str>, what: &str) -> String {
    match proc1 {
        Some(p) => text.replace("/proc/1/", p),
        None => {
            assert!(
                !text.contains("/proc/1/"),
                "{what} uses /proc/1, but the pod has no hostPID"
            );
            text.to_owned()
        }
    }
}

/// The lab's answer to a downward API field.
fn downward(field: &str) -> String {
    match field {
        "spec.nodeName" => LAB_NODE_NAME.to_owned(),
        "status.podIP" => POD_IP.to_string(),
        "status.hostIP" => NODE_IP.to_string(),
        other => panic!("no lab value for the downward API field {other}"),
    }
}

/// Kubernetes' `$(VAR)` expansion in env values, command and args: a reference to a variable
/// defined earlier is replaced, `$$` is a literal `$`, anything else stays as written.
pub fn expand(text: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|b| b.split_once(')')) {
            match env.iter().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The Prometheus operator's camelCase relabeling keys in Prometheus's own snake_case.
pub fn snake_keys(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let mut key = String::new();
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            key.push('_');
                        }
                        key.push(c.to_ascii_lowercase());
                    }
                    (key, snake_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(snake_keys).collect()),
        other => other.clone(),
    }
}

/// The strings of a YAML list (none when it is absent).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| str_of(s).to_owned())
        .collect()
}

/// Bytes in a Kubernetes memory quantity (`64Mi`, `100M`, `1Gi`, plain bytes).
pub fn memory_bytes(quantity: &str) -> u64 {
    const UNITS: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in UNITS {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<u64>().expect("memory quantity") * factor;
        }
    }
    quantity.parse().expect("memory quantity")
}

/// The STUN port of the shipped configs' `source_ip` checks.
pub const STUN_PORT: u16 = 3478;

/// What the shipped configs (deploy/base/config.yaml and the overlays') talk to, at their example
/// addresses, which are the lab's: TCP on on-prem's port 389, the on-prem DNS and the cluster
/// DNS forwarding the corporate zone to it, coturn as the on-prem STUN server, and a resolv.conf
/// naming the cluster DNS for the pod and for the node (its /run/systemd/resolve/resolv.conf,
/// and with hostPID the stand-in init's `/proc/1/root/etc/resolv.conf`), so no query leaves the
/// lab. The node tracks connections as a real node
/// does, and masquerades pod traffic to on-prem when `masquerade` is set (kubenet).
///
/// Start it before [`PodRun::prepare`]: the stand-in init must start with the node's
/// resolv.conf in place. `None` (after one line saying why) when dnsmasq is missing outside CI.
pub struct ConfigTargets {
    _etc: [EtcOverlay; 2],
}

impl ConfigTargets {
    pub fn start(lab: &Lab, test: &str, masquerade: bool) -> Option<ConfigTargets> {
        if !dns::dnsmasq_available(test) || !web::nginx_available(test) {
            return None;
        }
        // Its plain HTTP /healthz on port 80 is what the shipped `http` probe asks.
        lab.onprem_web();
        lab.serve_tcp(Host::Onprem, SocketAddr::from((ONPREM_IP, 389)));
        lab.onprem_dns();
        lab.cluster_dns(Forward::Onprem);
        lab.start_coturn(STUN_PORT);
        lab.masquerade(masquerade);
        let resolv = std::fs::read_to_string(lab.resolv_conf("resolv.conf", &[CLUSTER_DNS_IP]))
            .expect("the lab's resolv.conf");
        let _etc = [Host::Pod, Host::Node].map(|h| {
            let etc = EtcOverlay::new(lab, h);
            etc.write("resolv.conf", &resolv);
            etc
        });
        // The node's systemd-resolved directory, which the base DaemonSet mounts.
        let resolve = on_node(lab, NODE_RESOLVE_DIR);
        std::fs::create_dir_all(&resolve).expect("the node's resolve directory");
        std::fs::write(resolve.join("resolv.conf"), &resolv).expect("the node's resolv.conf");
        Some(ConfigTargets { _etc })
    }
}

/// Every `(probe, netns)` check a config defines: each probe in its `netns` list, or in every
/// namespace of the `netns` section (both when there is none).
pub fn configured_checks(config: &str) -> Vec<(String, String)> {
    let config: Value = serde_norway::from_str(config).expect("the config is YAML");
    let all: Vec<String> = match config["netns"].as_object() {
        Some(netns) => netns.keys().cloned().collect(),
        None => vec!["pod".to_owned(), "host".to_owned()],
    };
    let mut checks: Vec<(String, String)> = config["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .flat_map(|probe| {
            let name = str_of(&probe["name"]).to_owned();
            let netns = match probe["netns"].as_array() {
                Some(list) => list.iter().map(|n| str_of(n).to_owned()).collect(),
                None => all.clone(),
            };
            netns.into_iter().map(move |n| (name.clone(), n))
        })
        .collect();
    checks.sort();
    checks
}

/// Files bind-mounted over /etc inside a lab namespace: `ip netns exec` mounts each file in
/// /etc/netns/NAME/ over its namesake in /etc. Removed on drop.
pub struct EtcOverlay {
    dir: PathBuf,
}

impl EtcOverlay {
    pub fn new(lab: &Lab, h: Host) -> EtcOverlay {
        let dir = Path::new("/etc/netns").join(lab.ns_name(h));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        EtcOverlay { dir }
    }

    /// Writes (or rewrites) /etc/NAME as the namespace's processes will see it from their next
    /// start on.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

impl Drop for EtcOverlay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
