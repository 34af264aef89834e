//! Native histograms end to end: a real Prometheus with native histograms on scrapes a lab
//! agent's protobuf exposition and reads its ICMP round trips as one native series, while one
//! without them scrapes the same agent's text and gets the classic `_bucket` series; both hold
//! the same series otherwise.

mod lab;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lab::{Host, Lab, NODE_IP, ONPREM_IP, POD_IP};
use serde_json::{json, Value};
use support::{pod_only, support_tool, Agent, PORT};

const RTT: &str = r#"hybridprobe_icmp_rtt_seconds{probe="dc1-ping"}"#;
/// A series' labels, its name as `__name__`.
type Labels = BTreeMap<String, String>;

const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// A Prometheus in the lab's node namespace scraping the agent every second.
struct Prometheus<'a> {
    lab: &'a Lab,
    port: u16,
}

impl<'a> Prometheus<'a> {
    fn start(lab: &'a Lab, name: &str, port: u16, flags: &[&str]) -> Prometheus<'a> {
        let config = json!({
            "scrape_configs": [{
                "job_name": "hybridprobe",
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [format!("{POD_IP}:{PORT}")]}],
            }],
        });
        // JSON is YAML.
        let path = lab.tmpdir().join(format!("{name}.yml"));
        std::fs::write(&path, config.to_string()).unwrap();
        let storage = lab.tmpdir().join(format!("{name}-data"));
        let mut args = vec![
            format!("--config.file={}", path.display()),
            format!("--storage.tsdb.path={}", storage.display()),
            format!("--web.listen-address={NODE_IP}:{port}"),
            "--log.level=warn".to_owned(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.spawn(Host::Node, "prometheus", &args, &[]);
        Prometheus { lab, port }
    }

    fn api(&self, path: &str, param: &str) -> Value {
        let url = format!("http://{NODE_IP}:{}/api/v1/{path}", self.port);
        let args = ["-s", "-m", "5", "--noproxy", "*", "-G"];
        let out = self.lab.exec(
            Host::Node,
            "curl",
            &[&args[..], &["--data-urlencode", param, &url]].concat(),
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        // Null until Prometheus listens; after that a failed query is the test's bug.
        assert!(
            answer.is_null() || answer["status"] == "success",
            "{param}: {answer}"
        );
        answer["data"].clone()
    }

    /// The one value an instant query returns, if it returns one.
    fn value(&self, expr: &str) -> Option<f64> {
        let data = self.api("query", &format!("query={expr}"));
        let [sample] = data["result"].as_array()?.as_slice() else {
            return None;
        };
        sample["value"][1].as_str()?.parse().ok()
    }

    fn has_series(&self, selector: &str) -> bool {
        !self.series(selector).is_empty()
    }

    /// The label sets of every series `selector` matches, ever scraped.
    fn series(&self, selector: &str) -> BTreeSet<Labels> {
        let data = self.api("series", &format!("match[]={selector}"));
        let series = data.as_array().cloned().unwrap_or_default();
        series
            .into_iter()
            .map(|s| serde_json::from_value(s).expect("a label set"))
            .collect()
    }
}

/// The classic series as the native scraper holds them: a histogram `h` (which has `h_bucket`
/// series) is one series `h` per `h_count`, and its `_bucket` and `_sum` series are gone.
fn as_native(classic: &BTreeSet<Labels>) -> BTreeSet<Labels> {
    let name = |labels: &Labels| labels["__name__"].clone();
    let histograms: BTreeSet<String> = classic
        .iter()
        .filter_map(|labels| name(labels).strip_suffix("_bucket").map(str::to_owned))
        .collect();
    classic
        .iter()
        .filter_map(|labels| {
            let name = name(labels);
            let histogram = |suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| histograms.contains(*base))
            };
            if histogram("_bucket").or(histogram("_sum")).is_some() {
                return None;
            }
            let mut labels = labels.clone();
            if let Some(base) = histogram("_count") {
                labels.insert("__name__".into(), base.to_owned());
            }
            Some(labels)
        })
        .collect()
}

#[test]
#[ignore = "needs the network lab (root); .ci/run runs it"]
fn a_native_histogram_scraper_gets_native_series_and_others_the_classic_ones() {
    if !support_tool("prometheus") {
        return;
    }
    let Some(lab) = Lab::new("native-hist") else {
        return;
    };
    // Both scrapers first, so that each sees every series the agent ever exposes.
    let native = Prometheus::start(
        &lab,
        "native",
        9090,
        &["--enable-feature=native-histograms"],
    );
    let classic = Prometheus::start(&lab, "classic", 9091, &[]);
    let agent = Agent::start(
        &lab,
        &pod_only(&format!(
            "  - name: dc1-ping\n    icmp: {{ target: {ONPREM_IP}, count: 3 }}\n"
        )),
    );
    agent.wait_ready();

    // The agent answers each with the format it asked for.
    let content_type = |accept: &str| {
        let url = format!("http://{POD_IP}:{PORT}/metrics");
        let format = "%{content_type}";
        let args = ["-s", "-o", "/dev/null", "-w", format, "-H", accept, &url];
        lab.must(Host::Pod, "curl", &args)
    };
    assert_eq!(content_type(&format!("Accept: {PROTOBUF}")), PROTOBUF);
    assert_eq!(
        content_type("Accept: */*"),
        "text/plain; version=0.0.4; charset=utf-8"
    );

    // Replies land in the native histogram's buckets, read as a rate and a median: once the
    // range of the rate is full of samples, up to three echoes a second, less what the
    // extrapolation at its ends and late rounds on a busy machine lose.
    lab.wait_until("12 s of native samples", Duration::from_secs(40), || {
        native
            .value(&format!("histogram_count({RTT})"))
            .is_some_and(|n| n >= 36.0)
    });
    let rate = format!("histogram_count(rate({RTT}[10s]))");
    let per_second = native.value(&rate).expect("a rate");
    assert!(per_second > 0.5 && per_second < 6.0, "{per_second}/s");
    let median = native
        .value(&format!("histogram_quantile(0.5, {RTT})"))
        .expect("a median");
    assert!(median > 0.0 && median < 0.8, "median round trip {median}s");
    assert!(
        !native.has_series(r#"{__name__=~"hybridprobe_icmp_rtt_seconds_.+"}"#),
        "classic series beside the native one"
    );

    // The scraper without native histograms reads the text's buckets.
    let buckets = r#"hybridprobe_icmp_rtt_seconds_bucket{probe="dc1-ping"}"#;
    lab.wait_until("classic buckets", Duration::from_secs(30), || {
        classic
            .value(&format!("sum(rate({buckets}[1m]))"))
            .is_some_and(|r| r > 0.0)
    });
    assert_eq!(classic.series(buckets).len(), 7, "6 bounds and +Inf");
    assert!(!classic.has_series(RTT));

    // Apart from the histograms, both hold the same series: names, label sets and all.
    let every = r#"{__name__=~"hybridprobe_.+"}"#;
    // Each scrapes on its own second, so a series new in the last one may be in one only.
    let mut tries = 0;
    let (ours, theirs) = loop {
        let (ours, theirs) = (native.series(every), as_native(&classic.series(every)));
        tries += 1;
        if ours == theirs || tries == 10 {
            break (ours, theirs);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(ours, theirs);
    assert!(ours.len() > 20, "{ours:?}");

    // The dashboard's round-trip quantiles read whichever of the two a Prometheus holds.
    for expr in dashboard_queries_of("hybridprobe_icmp_rtt_seconds") {
        for (scraper, prom) in [("native", &native), ("classic", &classic)] {
            let data = prom.api("query", &format!("query={expr}"));
            let found = data["result"].as_array().is_some_and(|r| !r.is_empty());
            assert!(found, "{scraper}: no data for {expr}: {data}");
        }
    }
}

/// The dashboard's queries that read `metric`, every variable set to match anything.
fn dashboard_queries_of(metric: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/dashboards/hybridprobe.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str())
        .filter(|expr| expr.contains(metric))
        .map(|expr| variables_matching_anything(expr).replace("$__rate_interval", "10s"))
        .collect();
    assert!(!queries.is_empty(), "no dashboard query reads {metric}");
    queries
}

/// `expr` with every `$variable` in a label matcher replaced by a match-anything regex.
fn variables_matching_anything(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find("=~\"$") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail.find('"').expect("a closing quote");
        out.push_str(".*");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
