//! The `http` probe: one HTTP/1.1 request over a fresh connection opened in the probe's
//! namespace, over TLS for `https`, directly or through a forward proxy, judged by its status and
//! optionally its body, with each phase timed under blackbox_exporter's names.

mod connect;
mod proxy;
mod spec;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use prometheus::GaugeVec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::resolver::{self, lookup, Family};
use super::series::InfoSeries;
use super::target::Host;
use super::tls;
use super::{CheckLabels, Failure, Families, Measurements, Outcome, Probe, Reason, Target};
use crate::netns::NetnsContext;

pub use super::tls::CertProblem;
pub use connect::{judge_connect, parse_reply, Parsed, Reply};
pub use proxy::{NoProxy, Proxy};
pub use spec::{HttpSpec, Method, StatusRanges, Url};

/// The most a response head may take (hyper's read buffer, which bounds the head).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most of a body read to match `body_regex`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// blackbox_exporter's phase names, in order, and the proxy's CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Resolve,
    Connect,
    /// From sending CONNECT to the proxy's reply head.
    ProxyConnect,
    Tls,
    Processing,
    Transfer,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Resolve,
        Phase::Connect,
        Phase::ProxyConnect,
        Phase::Tls,
        Phase::Processing,
        Phase::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Resolve => "resolve",
            Phase::Connect => "connect",
            Phase::ProxyConnect => "proxy_connect",
            Phase::Tls => "tls",
            Phase::Processing => "processing",
            Phase::Transfer => "transfer",
        }
    }
}

/// What a round measured; failed rounds carry what they got to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpReport {
    /// Each phase that ran, summed over redirects.
    pub phases: Vec<(Phase, Duration)>,
    pub status: Option<u16>,
    /// `TLS 1.3`, as blackbox_exporter names it.
    pub tls_version: Option<String>,
    /// The earliest notAfter of the last presented chain, Unix seconds.
    pub cert_expiry: Option<i64>,
    /// What was wrong with the certificate of a refused handshake, for the diagnoses (boxed:
    /// every round's result carries the field, few fill it).
    pub cert_problem: Option<Box<CertProblem>>,
}

impl HttpReport {
    /// Whether the round got through `phase` (on any hop of a redirect chain).
    pub fn ran(&self, phase: Phase) -> bool {
        self.phases.iter().any(|(p, _)| *p == phase)
    }

    fn add(&mut self, phase: Phase, took: Duration) {
        match self.phases.iter_mut().find(|(p, _)| *p == phase) {
            Some((_, sum)) => *sum += took,
            None => self.phases.push((phase, took)),
        }
    }
}

/// The `http` kind's own series.
pub struct HttpSeries {
    phase: GaugeVec,
    status: GaugeVec,
    tls_version: InfoSeries,
    cert_expiry: GaugeVec,
}

impl Probe for HttpSpec {
    type Measurements = HttpReport;
    type Series = HttpSeries;

    fn register(families: &mut dyn Families) -> HttpSeries {
        HttpSeries {
            phase: families.gauges(
                "hybridprobe_http_phase_duration_seconds",
                "Duration of each phase of the last HTTP round (resolve, connect, \
                 proxy_connect, tls, processing, transfer), summed over redirects.",
                &CheckLabels::names(&["phase"]),
            ),
            status: families.gauges(
                "hybridprobe_http_status_code",
                "Status code of the last HTTP response (0 when none came).",
                &CheckLabels::names(&[]),
            ),
            tls_version: InfoSeries::new(families.gauges(
                "hybridprobe_http_tls_version_info",
                "Always 1; the version label is the TLS version of the last handshake.",
                &CheckLabels::names(&["version"]),
            )),
            cert_expiry: families.gauges(
                "hybridprobe_http_cert_expiry_timestamp_seconds",
                "Earliest notAfter in the certificate chain the server last presented, as a \
                 Unix timestamp.",
                &CheckLabels::names(&[]),
            ),
        }
    }

    fn describe(&self) -> String {
        let via = self
            .proxy_for(&self.url)
            .map(|p| format!(" via proxy {p}"))
            .unwrap_or_default();
        format!("http {} {}{via}", self.method.as_str(), self.url)
    }

    async fn run(&self, ctx: &NetnsContext, budget: Duration) -> Result<Outcome, Failure> {
        let mut round = Round::default();
        let result = tokio::time::timeout(budget, self.round(ctx, &mut round)).await;
        let (reason, detail) = match result {
            Ok(Ok(detail)) => (None, detail),
            Ok(Err((reason, detail))) => (Some(reason), detail),
            Err(_) => (
                Some(Reason::Timeout),
                format!(
                    "{}{}: no answer within {budget:?} ({})",
                    round.at,
                    round
                        .via
                        .as_ref()
                        .map(|p| format!(" via proxy {p}"))
                        .unwrap_or_default(),
                    round.phase.map_or("resolve", Phase::as_str)
                ),
            ),
        };
        super::conclude(reason, detail, Measurements::Http(round.report))
    }

    fn observe(series: &HttpSeries, check: CheckLabels<'_>, measured: &HttpReport) {
        let labels = check.values();
        for phase in Phase::ALL {
            let took = measured
                .phases
                .iter()
                .find(|(p, _)| *p == phase)
                .map_or(0.0, |(_, d)| d.as_secs_f64());
            series
                .phase
                .with_label_values(&check.with(&[phase.as_str()]))
                .set(took);
        }
        series
            .status
            .with_label_values(&labels)
            .set(f64::from(measured.status.unwrap_or(0)));
        series
            .tls_version
            .set(check, measured.tls_version.clone().map(|v| vec![v]));
        if let Some(expiry) = measured.cert_expiry {
            series
                .cert_expiry
                .with_label_values(&labels)
                .set(expiry as f64);
        }
    }

    fn forget(series: &HttpSeries, check: CheckLabels<'_>) {
        series.tls_version.forget(check);
    }

    /// The URL's host, or the pinned address when `resolve_to` says where the round connects.
    /// Through a proxy, the probe's own path ends at the proxy: only what the target itself
    /// said (a pass, its certificate, its status or body) tells that it answered.
    /// A round that connected answered, even if it then timed out (a stalled TLS handshake).
    fn targets(&self, failure: Option<&Failure>) -> Vec<Target> {
        let host = self
            .resolve_to
            .map_or_else(|| self.url.host.clone(), Host::Ip);
        let through_proxy = self.proxy_for(&self.url).is_some();
        if !through_proxy {
            let connected = |measured: &Measurements| match measured {
                Measurements::Http(report) if report.ran(Phase::Connect) => Some(true),
                _ => None,
            };
            return vec![Target::judged(
                &host,
                self.url.authority(),
                failure,
                connected,
            )];
        }
        let mut target = Target::by_reason(&host, self.url.authority(), failure);
        target.answered = match failure.map(|f| f.reason) {
            None => Some(true),
            Some(
                Reason::TlsUntrusted
                | Reason::TlsExpired
                | Reason::TlsNameMismatch
                | Reason::HttpStatus
                | Reason::BodyMismatch,
            ) => Some(true),
            Some(_) => None,
        };
        vec![target]
    }

    fn family(&self) -> Option<(&Host, Family)> {
        Some((&self.url.host, self.family))
    }
}

/// Where a round got to, kept outside its future so a timeout can say.
#[derive(Default)]
struct Round {
    report: HttpReport,
    phase: Option<Phase>,
    /// The URL being fetched.
    at: String,
    /// The proxy it is fetched through, if any.
    via: Option<String>,
}

impl Round {
    fn enter(&mut self, phase: Phase) -> Instant {
        self.phase = Some(phase);
        Instant::now()
    }

    fn done(&mut self, phase: Phase, started: Instant) {
        self.report.add(phase, started.elapsed());
    }
}

type Judged = Result<String, (Reason, String)>;

impl HttpSpec {
    async fn round(&self, ctx: &NetnsContext, round: &mut Round) -> Judged {
        // Copied only when a redirect leads elsewhere.
        let mut url = Cow::Borrowed(&self.url);
        let mut hops = 0;
        loop {
            round.at = url.to_string();
            let response = self.fetch(ctx, &url, round).await?;
            let status = response.status.as_u16();
            let location = response.location.as_deref();
            if (300..400).contains(&status) && hops < self.max_redirects {
                if let Some(next) = location.and_then(|l| url.join(l)) {
                    hops += 1;
                    url = Cow::Owned(next);
                    continue;
                }
            }
            return self.judge(&url, response);
        }
    }

    fn judge(&self, url: &Url, response: Fetched) -> Judged {
        let status = response.status.as_u16();
        let seen = format!("{} {url}: {status}", self.method.as_str());
        if !self.valid_status.contains(status) {
            let reason = response
                .status
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default();
            return Err((
                Reason::HttpStatus,
                format!("{seen}{reason}, expected {}", self.valid_status),
            ));
        }
        match (&self.body_regex, response.body_matched) {
            (Some(regex), Some((false, read))) => Err((
                Reason::BodyMismatch,
                format!("{seen}, body ({read} bytes read) does not match /{regex}/"),
            )),
            _ => Ok(seen),
        }
    }

    /// The proxy a request to `url` goes through: none without one, or when `no_proxy` says.
    fn proxy_for(&self, url: &Url) -> Option<&Proxy> {
        self.proxy
            .as_ref()
            .filter(|p| !p.bypassed_by(&url.host, self.pinned(url)))
    }

    /// The `resolve_to` address, when it applies to `url` (the configured host only).
    fn pinned(&self, url: &Url) -> Option<IpAddr> {
        self.resolve_to.filter(|_| url.host == self.url.host)
    }

    /// One request over a fresh connection to `url`, or to its proxy.
    async fn fetch(
        &self,
        ctx: &NetnsContext,
        url: &Url,
        round: &mut Round,
    ) -> Result<Fetched, (Reason, String)> {
        let proxy = self.proxy_for(url);
        round.via = proxy.map(Proxy::to_string);
        let started = round.enter(Phase::Resolve);
        let addr = match proxy {
            Some(proxy) => SocketAddr::new(self.proxy_ip(ctx, proxy).await?, proxy.port),
            None => resolver::socket_addr(self.target_ip(ctx, url).await?, url.port),
        };
        round.done(Phase::Resolve, started);

        let started = round.enter(Phase::Connect);
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| {
            let peer = peer_name(proxy, addr);
            (Reason::of_io(&e), format!("connect {peer}: {e}"))
        })?;
        round.done(Phase::Connect, started);

        if !url.https {
            return self.exchange(tcp, url, round).await;
        }
        let peer = match proxy {
            Some(proxy) => {
                let target = self.tunnel_target(url);
                let started = round.enter(Phase::ProxyConnect);
                connect::open(&mut tcp, &proxy.to_string(), &target).await?;
                round.done(Phase::ProxyConnect, started);
                format!("{target} via proxy {proxy}")
            }
            None => peer_name(None, addr),
        };
        let (config, presented) =
            tls::client_config(&self.tls, b"http/1.1").map_err(|e| (Reason::Error, e))?;
        let name = tls::server_name(&self.tls, &url.host_text()).map_err(|e| (Reason::Error, e))?;
        let started = round.enter(Phase::Tls);
        let handshake = tokio_rustls::TlsConnector::from(config)
            .connect(name.clone(), tcp)
            .await;
        round.done(Phase::Tls, started);
        let chain = presented.lock().unwrap_or_else(|p| p.into_inner()).clone();
        round.report.cert_expiry = tls::earliest_expiry(&chain);
        let stream = match handshake {
            Ok(stream) => stream,
            Err(e) => {
                let (reason, why) = tls::failed(&e, &presented);
                let name = name.to_str();
                round.report.cert_problem =
                    CertProblem::of(reason, &chain, &name, unix_now()).map(Box::new);
                return Err((reason, format!("tls {peer} ({name}): {why}")));
            }
        };
        round.report.tls_version = stream.get_ref().1.protocol_version().map(tls::version_name);
        self.exchange(stream, url, round).await
    }

    /// The address the request goes to directly: pinned, or the host resolved (and noted).
    async fn target_ip(&self, ctx: &NetnsContext, url: &Url) -> Result<IpAddr, (Reason, String)> {
        match self.pinned(url) {
            Some(ip) => Ok(ip),
            // `resolve` returns at least one address or fails.
            None => url
                .host
                .resolve_family(ctx, &self.resolver, self.family)
                .await
                .map(|ips| ips[0])
                .map_err(|f| (f.reason, f.detail)),
        }
    }

    /// The proxy's address, its name resolved like the target's would be. Not noted as the
    /// round's resolved address: that stays the target's.
    async fn proxy_ip(
        &self,
        ctx: &NetnsContext,
        proxy: &Proxy,
    ) -> Result<IpAddr, (Reason, String)> {
        let found = match &proxy.host {
            Host::Name(name) => lookup(name, ctx, &self.resolver, self.family).await,
            host => host.resolve_family(ctx, &self.resolver, self.family).await,
        };
        found
            .map(|ips| ips[0])
            .map_err(|f| (f.reason, format!("proxy {proxy}: {}", f.detail)))
    }

    /// What CONNECT asks for: the URL's host name, for the proxy to resolve, or the pinned
    /// address when `resolve_to` pins it.
    fn tunnel_target(&self, url: &Url) -> String {
        match self.pinned(url) {
            Some(ip) => SocketAddr::new(ip, url.port).to_string(),
            None => match &url.host {
                Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{}", url.port),
                host => format!("{host}:{}", url.port),
            },
        }
    }

    /// Sends the request and reads the response as far as the check needs.
    async fn exchange<S>(
        &self,
        stream: S,
        url: &Url,
        round: &mut Round,
    ) -> Result<Fetched, (Reason, String)>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io_err = |what: &str, e: hyper::Error| {
            let reason = std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .map_or(Reason::Error, Reason::of_io);
            let reason = if e.is_incomplete_message() {
                Reason::Reset
            } else {
                reason
            };
            (reason, format!("{what} {url}: {e}"))
        };
        let started = round.enter(Phase::Processing);
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_HEAD_BYTES)
            .handshake::<_, RequestBody>(TokioIo::new(stream))
            .await
            .map_err(|e| io_err("handshake", e))?;
        let request = self
            .request(url, round.via.is_some())
            .map_err(|e| (Reason::Error, e))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| io_err("request", e))?;
            round.done(Phase::Processing, started);
            self.read(response, url, round).await
        };
        tokio::pin!(exchange);
        // The connection is driven beside the exchange, in this task: nothing outlives the round.
        tokio::select! {
            biased;
            fetched = &mut exchange => fetched,
            driven = conn => match driven {
                Err(e) => Err(io_err("connection", e)),
                Ok(()) => exchange.await,
            },
        }
    }

    /// The request for `url`: in origin-form, or in absolute-form to a proxy (naming the pinned
    /// address when `resolve_to` pins it, as CONNECT would). Over a CONNECT tunnel the
    /// request is the origin's, so `to_proxy` is only for plain `http://`.
    fn request(&self, url: &Url, to_proxy: bool) -> Result<Request<RequestBody>, String> {
        let body: RequestBody = match &self.body {
            Some(text) => http_body_util::Either::Right(Full::new(Bytes::from(text.clone()))),
            None => http_body_util::Either::Left(Empty::new()),
        };
        let target = match (to_proxy && !url.https, self.pinned(url)) {
            (false, _) => url.path_and_query.clone(),
            (true, None) => url.to_string(),
            (true, Some(ip)) => Url {
                host: Host::Ip(ip),
                ..url.clone()
            }
            .to_string(),
        };
        Request::builder()
            .method(self.method.as_str())
            .uri(target)
            .header(hyper::header::HOST, url.authority())
            // Static values: no copy and no check of the bytes each round.
            .header(
                hyper::header::USER_AGENT,
                HeaderValue::from_static(USER_AGENT),
            )
            .header(hyper::header::CONNECTION, HeaderValue::from_static("close"))
            .body(body)
            .map_err(|e| format!("request {url}: {e}"))
    }

    async fn read(
        &self,
        response: Response<Incoming>,
        url: &Url,
        round: &mut Round,
    ) -> Result<Fetched, (Reason, String)> {
        let status = response.status();
        round.report.status = Some(status.as_u16());
        if let Some(failed) = self.proxy_own(&response, url, round) {
            return Err(failed);
        }
        let location = response
            .headers()
            .get(hyper::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let Some(regex) = self
            .body_regex
            .as_ref()
            .filter(|_| self.valid_status.contains(status.as_u16()))
        else {
            return Ok(Fetched {
                status,
                location,
                body_matched: None,
            });
        };
        let started = round.enter(Phase::Transfer);
        let mut body = response.into_body();
        let mut read = Vec::new();
        let matched = loop {
            if regex.is_match(&read) {
                break true;
            }
            if read.len() >= MAX_BODY_BYTES {
                break false;
            }
            match body.frame().await {
                None => break false,
                Some(Err(e)) => {
                    return Err((Reason::Reset, format!("read body {url}: {e}")));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let room = MAX_BODY_BYTES - read.len();
                        read.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
            }
        };
        round.done(Phase::Transfer, started);
        Ok(Fetched {
            status,
            location,
            body_matched: Some((matched, read.len())),
        })
    }
}

impl HttpSpec {
    /// A plain `http://` request through a proxy gets the proxy's own reply when it fails: a
    /// 407, or any reply with squid's `X-Squid-Error`. Other replies are the target's.
    fn proxy_own(
        &self,
        response: &Response<Incoming>,
        url: &Url,
        round: &Round,
    ) -> Option<(Reason, String)> {
        let proxy = round.via.as_deref().filter(|_| !url.https)?;
        let status = response.status();
        let squid_error = response
            .headers()
            .get("x-squid-error")
            .map(|v| connect::quoted(v.as_bytes(), connect::QUOTED));
        if status != hyper::StatusCode::PROXY_AUTHENTICATION_REQUIRED && squid_error.is_none() {
            return None;
        }
        let reply = Reply {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_owned(),
            squid_error,
            extra: 0,
        };
        connect::refusal(&reply, proxy, &format!("{} {url}", self.method.as_str()))
    }
}

type RequestBody = http_body_util::Either<Empty<Bytes>, Full<Bytes>>;

const USER_AGENT: &str = concat!("hybridprobe/", env!("CARGO_PKG_VERSION"));

/// What a connect failure names: the address, or the proxy (with its address when it has a name).
/// Formatted only when a connect fails.
fn peer_name(proxy: Option<&Proxy>, addr: SocketAddr) -> String {
    match proxy {
        Some(proxy) if matches!(proxy.host, Host::Name(_)) => {
            format!("proxy {proxy} ({})", addr.ip())
        }
        Some(proxy) => format!("proxy {proxy}"),
        None => addr.to_string(),
    }
}

/// A response as far as it was read.
struct Fetched {
    status: hyper::StatusCode,
    location: Option<String>,
    /// Whether the body matched, and how many bytes were read; `None` when not read.
    body_matched: Option<(bool, usize)>,
}

fn unix_now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Url {
    /// The host as SNI and certificates name it.
    fn host_text(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            host => host.to_string(),
        }
    }
}
