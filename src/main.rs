//! The `hybridprobe` command line: agent, check, validate, smoke, node-condition and reflect.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use hybridprobe::agent::{self, builtin, signal, ConfigSource};
use hybridprobe::config::{Config, ConfigError, DEFAULT_HOST_NETNS, DEFAULT_HOST_RESOLV_CONF};
use hybridprobe::diagnose::table::{self, ColorChoice, Style};
use hybridprobe::diagnose::verdict::Status;
use hybridprobe::http;
use hybridprobe::node_condition::{self, AgentUrl};
use hybridprobe::reflect;
use hybridprobe::smoke::AgentsTarget;

/// Connectivity diagnostics for Kubernetes joined to on-premises networks.
///
/// On every node, hybridprobe probes on-prem endpoints over the VPN or ExpressRoute path from
/// the pod network namespace and the host network namespace, and exports the results as
/// Prometheus metrics and a node verdict on /healthz.
#[derive(Parser)]
#[command(name = "hybridprobe", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter, e.g. `info` or `hybridprobe=debug`.
    #[arg(long, global = true, env = "HYBRIDPROBE_LOG", default_value = "info")]
    log: String,
    /// Log line format.
    #[arg(long, global = true, env = "HYBRIDPROBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: probe on schedule and serve /metrics, /healthz, /livez and /readyz.
    Agent(AgentArgs),
    /// Run every probe once, print a table (or JSON), and exit 0 if all pass, 1 if any fails,
    /// 2 if the config is bad.
    Check(CheckArgs),
    /// Parse and check a config file; print every problem with its path; exit 2 if any.
    Validate(ValidateArgs),
    /// Run the on-prem reflector: answer STUN Binding requests (UDP and TCP) and, with --http,
    /// GET /whoami with the source address each client was seen from.
    Reflect(ReflectArgs),
    /// Ask every agent behind a name (a headless Service) for its verdict; print one line per
    /// agent (with --explain, why each red one is red); exit 1 if any is red or unreachable, or
    /// fewer than --expect-nodes answer.
    Smoke(SmokeArgs),
    /// node-problem-detector's custom plugin: ask this node's agent for its verdict; print the
    /// first diagnosis code and its summary (at most 80 bytes); exit 0 if green, 1 if red, 2 if
    /// the agent cannot be asked or is starting.
    NodeCondition(NodeConditionArgs),
}

#[derive(Args)]
struct Source {
    /// YAML config file. Without it, a built-in profile derived from this machine checks the
    /// default gateway, each resolv.conf nameserver and the Kubernetes API.
    #[arg(long, short, env = "HYBRIDPROBE_CONFIG")]
    config: Option<PathBuf>,
    /// For the built-in profile: the host network namespace file to enter, or `none` to check
    /// only the agent's own namespace. The default is where the DaemonSet mounts the node's
    /// pinned namespace; `/proc/1/ns/net` works with hostPID and CAP_SYS_PTRACE.
    #[arg(long, env = "HYBRIDPROBE_HOST_NETNS", default_value = DEFAULT_HOST_NETNS)]
    host_netns: String,
    /// For the built-in profile: the host's resolv.conf (the default is where the DaemonSet
    /// mounts the node's /run/systemd/resolve; `/proc/1/root/etc/resolv.conf` with hostPID).
    #[arg(long, env = "HYBRIDPROBE_HOST_RESOLV_CONF", default_value = DEFAULT_HOST_RESOLV_CONF)]
    host_resolv_conf: PathBuf,
    /// The node name to report (the DaemonSet sets it from the downward API).
    #[arg(long, env = "HYBRIDPROBE_NODE")]
    node: Option<String>,
}

#[derive(Args)]
struct AgentArgs {
    #[command(flatten)]
    source: Source,
    /// Address for the HTTP server.
    #[arg(
        long,
        short,
        env = "HYBRIDPROBE_LISTEN",
        default_value = "0.0.0.0:9739"
    )]
    listen: SocketAddr,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    source: Source,
    /// Output format.
    #[arg(long, env = "HYBRIDPROBE_FORMAT", value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Color the table: `auto` on a terminal unless NO_COLOR is set.
    #[arg(long, env = "HYBRIDPROBE_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// For each failing check, capture evidence from both namespaces right after the round
    /// and print it, with the diagnoses that name the check, after the table (JSON: in each
    /// failing check's `evidence`).
    #[arg(long, env = "HYBRIDPROBE_EXPLAIN")]
    explain: bool,
}

#[derive(Args)]
struct ValidateArgs {
    /// YAML config file to check.
    #[arg(long, short, env = "HYBRIDPROBE_CONFIG")]
    config: PathBuf,
}

#[derive(Args)]
struct ReflectArgs {
    /// UDP and TCP address for STUN Binding requests. An IPv6 address (the default's `[::]`)
    /// takes IPv4 clients too.
    #[arg(long, env = "HYBRIDPROBE_REFLECT_LISTEN", default_value = reflect::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address for GET /whoami and the reflector's /metrics; no HTTP without it. `[::]:PORT`
    /// takes both families.
    #[arg(long, env = "HYBRIDPROBE_REFLECT_HTTP")]
    http: Option<SocketAddr>,
    /// A source network (CIDR or address) that may ask; repeat it, or separate with commas in
    /// the environment variable. Without any, every source may ask.
    #[arg(long = "allow", env = "HYBRIDPROBE_REFLECT_ALLOW", value_delimiter = ',', value_parser = reflect::parse_cidr)]
    allow: Vec<ipnet::IpNet>,
    /// Requests per second each source may make, on average.
    #[arg(long, env = "HYBRIDPROBE_REFLECT_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Requests a quiet source may make at once.
    #[arg(long, env = "HYBRIDPROBE_REFLECT_BURST", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    burst: u32,
}

#[derive(Args)]
struct SmokeArgs {
    /// NAME:PORT of the agents; NAME resolves to every agent's address.
    #[arg(long, env = "HYBRIDPROBE_AGENTS")]
    agents: AgentsTarget,
    /// Fail unless at least this many agents answer with a verdict.
    #[arg(long, env = "HYBRIDPROBE_EXPECT_NODES", default_value_t = 1)]
    expect_nodes: usize,
    /// How long each agent gets to answer.
    #[arg(long, env = "HYBRIDPROBE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// For each red agent, print why: its diagnoses (code, summary, hint), its failing checks
    /// with their detail, and the evidence it captured when they turned failing (the newest
    /// capture per check, cut to a bounded number of lines per agent). With --format junit,
    /// the evidence goes into each red agent's failure element.
    #[arg(long, env = "HYBRIDPROBE_EXPLAIN")]
    explain: bool,
    /// Report format: `text`, one line per agent and a verdict line, or `junit`, JUnit XML on
    /// stdout (one test case per agent, a failure for each red or unreachable one, and one for
    /// fewer agents than --expect-nodes) for CI systems that render test reports. The exit
    /// code is the same either way.
    #[arg(long, env = "HYBRIDPROBE_SMOKE_FORMAT", value_enum, default_value_t = SmokeFormat::Text)]
    format: SmokeFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum SmokeFormat {
    Text,
    Junit,
}

#[derive(Args)]
struct NodeConditionArgs {
    /// The agent on this node, http://HOST:PORT. From NPD's pod, the node-local Service of
    /// deploy/components/node-problem-detector; inside the agent's own pod, the default.
    #[arg(
        long,
        env = "HYBRIDPROBE_AGENT_URL",
        default_value = "http://127.0.0.1:9739"
    )]
    agent: AgentUrl,
    /// How long the agent gets to answer, connection included; keep it below the NPD rule's
    /// timeout.
    #[arg(long, env = "HYBRIDPROBE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Copy this binary to PATH (executable) and exit, for an init container that hands it to
    /// NPD's container through a shared volume.
    #[arg(long, value_name = "PATH")]
    install: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Exit code for a bad config or usage, as clap uses for usage errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, cli.log_format);
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Check(args) => {
            with_config(&args.source, |config, node| check(config, node, &args))
        }
        Command::Agent(args) => with_config(&args.source, |config, node| {
            agent(config, node, args.listen)
        }),
        Command::Smoke(args) => smoke(&args).unwrap_or_else(|e| {
            eprintln!("smoke FAIL: {e:#}");
            ExitCode::FAILURE
        }),
        Command::NodeCondition(args) => node_condition(&args).unwrap_or_else(|e| {
            // Exit 2, which NPD reads as "unknown": nothing was installed or asked.
            println!("unknown: {e:#}");
            ExitCode::from(node_condition::Status::Unknown.exit_code())
        }),
        Command::Reflect(args) => reflect(args).unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }),
    }
}

fn reflect(args: ReflectArgs) -> anyhow::Result<ExitCode> {
    let config = reflect::ReflectConfig {
        listen: args.listen,
        http: args.http,
        allow: args.allow,
        rate: args.rate,
        burst: args.burst,
    };
    runtime()?.block_on(reflect::run(config, signal::shutdown()))?;
    Ok(ExitCode::SUCCESS)
}

fn smoke(args: &SmokeArgs) -> anyhow::Result<ExitCode> {
    let summary = runtime()?.block_on(hybridprobe::smoke::run(
        &args.agents,
        args.expect_nodes,
        args.timeout,
    ))?;
    let report = match (args.format, args.explain) {
        (SmokeFormat::Text, false) => summary.render(),
        (SmokeFormat::Text, true) => summary.render_explained(),
        (SmokeFormat::Junit, explain) => {
            hybridprobe::smoke::junit(&summary, &args.agents.to_string(), explain)
        }
    };
    print!("{report}");
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn node_condition(args: &NodeConditionArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.install {
        node_condition::install(path)?;
        println!("installed {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let condition = runtime()?.block_on(node_condition::ask(&args.agent, args.timeout));
    println!("{}", condition.message);
    Ok(ExitCode::from(condition.status.exit_code()))
}

fn validate(args: &ValidateArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(config) => {
            let checks: usize = config.probes.iter().map(|p| p.netns.len()).sum();
            println!(
                "{}: ok ({} probes, {checks} checks)",
                args.config.display(),
                config.probes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => config_error(&e),
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("invalid config:\n{e}");
    ExitCode::from(EXIT_USAGE)
}

/// Loads the config (or the built-in profile) and runs `then` with it.
fn with_config(
    source: &Source,
    then: impl FnOnce(ConfigSource, String) -> anyhow::Result<ExitCode>,
) -> ExitCode {
    let config = match &source.config {
        Some(path) => match Config::load(path) {
            Ok(config) => ConfigSource::File(path.clone(), config),
            Err(e) => return config_error(&e),
        },
        None => {
            let host = (source.host_netns != "none").then(|| PathBuf::from(&source.host_netns));
            let namespaces = builtin::namespaces(host, source.host_resolv_conf.clone());
            ConfigSource::Fixed(builtin::config(&builtin::Machine::read(namespaces)))
        }
    };
    let node = source.node.clone().unwrap_or_else(node_name);
    then(config, node).unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn agent(source: ConfigSource, node: String, listen: SocketAddr) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        // Bound first: an agent that cannot serve exits before it probes anything.
        let listener = http::listen(listen).await?;
        // In-flight requests get a grace period to finish once shutdown begins (server::Limits).
        let serve = |state| http::serve(listener, state, signal::shutdown());
        agent::run(source, node, serve).await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn check(source: ConfigSource, node: String, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let (ConfigSource::File(_, config) | ConfigSource::Fixed(config)) = source;
    let verdict = runtime()?.block_on(agent::check_once(&config, node, args.explain));
    match args.format {
        Format::Table => {
            let style = args.color.for_stream(&std::io::stdout());
            print!("{}", table::styled_table(&verdict, style));
            if args.explain {
                print!("{}", table::explain(&verdict, style));
            }
        }
        Format::Json => println!("{}", serde_json::to_string_pretty(&verdict)?),
    }
    Ok(if verdict.status == Status::Ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One thread runs every pod-side probe and the HTTP server: probes mostly wait, and a single
/// event loop costs less CPU (no cross-thread wake-ups) and memory than a worker pool.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// NODE_NAME from the downward API, else the kernel's host name.
fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Container logs are files: escape codes there only garble `kubectl logs`.
    let ansi = ColorChoice::Auto.for_stream(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi == Style::Color)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
