//! MongoDB collector (also FerretDB, which speaks the wire protocol): one persistent driver client per target,
//! one file per command.
//!
//! Once per connection: `buildInfo` (version; FerretDB announces itself there) and `hello` (standalone, replica
//! set member or mongos). Per poll: `serverStatus` with the unread sections switched off; on a replica set
//! member `replSetGetStatus` and two one-entry reads of the oplog; on a mongos `balancerStatus` and
//! `$shardedDataDistribution` (6.0.3+) or a chunk count per shard; every `index_stats_interval`, `listDatabases`,
//! `listCollections` per database and `$indexStats` per collection up to `max_collections`. Every command carries
//! `maxTimeMS` and a client-side deadline. What the server lacks is detected, not retried: it shows as
//! `mongodb_capability_available{capability} 0` and the view is not asked again on that connection.
//!
//! Least privilege: the built-in `clusterMonitor` role on `admin` plus `read` on `local` (for the oplog).

pub mod balancer_status;
pub mod build_info;
pub mod config_chunks;
pub mod connection;
pub mod fields;
pub mod hello;
pub mod index_stats;
pub mod list_collections;
pub mod oplog;
pub mod repl_set_get_status;
pub mod server_status;
pub mod sharded_data_distribution;

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{CollectError, ErrorKind};
use crate::metric::{bool_value, MetricDesc, MetricKind, Sample};
use crate::secret::PasswordSource;
use crate::view::ViewRunner;
use crate::{Collected, Collector, ViewOutcome};

use build_info::BuildInfo;
use connection::{Conn, MongoError, MongoSession};
use hello::Topology;
use list_collections::DatabaseFilter;

pub static CAPABILITY: MetricDesc = MetricDesc {
    name: "mongodb_capability_available",
    help: "1 when the server provides the feature, 0 when it does not (flavour, version or topology); detected per connection",
    kind: MetricKind::Gauge,
    labels: &["capability"],
};
pub static POLL_COMMANDS: MetricDesc = MetricDesc {
    name: "mongodb_poll_commands",
    help: "Commands the collector sent to the server during the last poll",
    kind: MetricKind::Gauge,
    labels: &[],
};

/// Every metric family this collector can emit.
pub fn descriptors() -> Vec<&'static MetricDesc> {
    [
        &[&CAPABILITY, &POLL_COMMANDS][..],
        build_info::DESCRIPTORS,
        server_status::DESCRIPTORS,
        repl_set_get_status::DESCRIPTORS,
        oplog::DESCRIPTORS,
        index_stats::DESCRIPTORS,
        balancer_status::DESCRIPTORS,
        sharded_data_distribution::DESCRIPTORS,
        config_chunks::DESCRIPTORS,
    ]
    .concat()
}

/// How to reach one MongoDB node and what to read from it.
#[derive(Clone)]
pub struct MongoOptions {
    /// The target's configured name, used in error messages.
    pub target: String,
    /// Connection string naming one node (mongod or mongos): `mongodb://host:port/?tls=true&tlsCAFile=...`.
    /// TLS, auth mechanism and other driver options travel in it; keep the password out of it (use `password`).
    pub url: String,
    /// User name; overrides one in the URL.
    pub user: Option<String>,
    /// Password, inline or read from a file at each connection attempt.
    pub password: Option<PasswordSource>,
    /// Database the user is defined in; default: the URL's `authSource`, else the driver's default (`admin`).
    pub auth_source: Option<String>,
    /// Talk to exactly this node instead of discovering the replica set and following its primary; only applied
    /// to a single-host URL that does not set `directConnection` itself.
    pub direct_connection: bool,
    /// Limit for opening a TCP/TLS connection (and resolving a mongodb+srv:// string).
    pub connect_timeout: Duration,
    /// How long a command waits for the node to be reachable before failing.
    pub server_selection_timeout: Duration,
    /// Server-side `maxTimeMS` of every command.
    pub command_timeout: Duration,
    pub views: MongoViews,
}

impl fmt::Debug for MongoOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoOptions")
            .field("target", &self.target)
            .field("url", &redact_url(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("auth_source", &self.auth_source)
            .field("direct_connection", &self.direct_connection)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("views", &self.views)
            .finish()
    }
}

/// The connection string with any password in its user info, and the values of secret options in its query
/// string, replaced, for logs and debug output.
///
/// The user info is cut at the last `@` followed by something that looks like a host list, not at the first
/// `/`: a password written without percent-encoding may hold `/`, `?`, `:` or `@`. When in doubt more is
/// redacted, never less.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let mut out = format!("{scheme}://");
    let after_userinfo = match userinfo_end(rest) {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":<redacted>");
                }
                None => out.push_str(&rest[..at]),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match after_userinfo.split_once('?') {
        Some((hosts_and_database, query)) => {
            out.push_str(hosts_and_database);
            out.push('?');
            for (index, pair) in query.split('&').enumerate() {
                if index > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((key, _)) if is_secret_option(key) => {
                        out.push_str(key);
                        out.push_str("=<redacted>");
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        None => out.push_str(after_userinfo),
    }
    out
}

/// Where the user info ends: the last `@` whose following text, up to the next `/` or `?`, is a host list;
/// failing that the last `@` at all.
fn userinfo_end(rest: &str) -> Option<usize> {
    let host_like = |at: usize| {
        let after = &rest[at + 1..];
        let hosts = &after[..after.find(['/', '?']).unwrap_or(after.len())];
        !hosts.is_empty()
            && hosts
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:,[]%".contains(c))
    };
    let mut ats = rest
        .match_indices('@')
        .map(|(at, _)| at)
        .collect::<Vec<_>>();
    ats.reverse();
    ats.iter()
        .copied()
        .find(|&at| host_like(at))
        .or_else(|| ats.first().copied())
}

/// Connection-string options whose values are credentials: the TLS key file password, and
/// `authMechanismProperties` (which carries `AWS_SESSION_TOKEN` for MONGODB-AWS); anything named like a
/// password, secret or token too.
fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "authmechanismproperties"
        || key.contains("password")
        || key.contains("secret")
        || key.contains("token")
}

impl Default for MongoOptions {
    fn default() -> Self {
        MongoOptions {
            target: "mongodb".into(),
            url: "mongodb://127.0.0.1:27017/".into(),
            user: None,
            password: None,
            auth_source: None,
            direct_connection: true,
            connect_timeout: Duration::from_secs(5),
            server_selection_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            views: MongoViews::default(),
        }
    }
}

/// Which views a target reads; all on by default. serverStatus is always read: the fleet signals come from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MongoViews {
    /// `$indexStats` per collection.
    pub index_stats: bool,
    /// How often index usage is read; polls in between repeat the last values. Zero reads it on every poll.
    pub index_stats_interval: Duration,
    /// Collections read per round (index usage, per-collection sharding series); the rest are counted as skipped.
    pub max_collections: usize,
    /// When not empty, only these databases are looked into.
    pub databases_include: Vec<String>,
    /// Databases never looked into; wins over `databases_include`.
    pub databases_exclude: Vec<String>,
    /// `replSetGetStatus` on replica set members.
    pub replication: bool,
    /// Oplog window on replica set members (needs `read` on `local`).
    pub oplog: bool,
    /// Balancer and data distribution on a mongos.
    pub sharding: bool,
}

impl Default for MongoViews {
    fn default() -> Self {
        MongoViews {
            index_stats: true,
            index_stats_interval: Duration::from_secs(300),
            max_collections: 100,
            databases_include: Vec::new(),
            databases_exclude: vec!["admin".into(), "config".into(), "local".into()],
            replication: true,
            oplog: true,
            sharding: true,
        }
    }
}

/// The features a server may lack. Bounded: these names are the only values of the `capability` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    Opcounters,
    OpLatencies,
    DocumentMetrics,
    CommandMetrics,
    Connections,
    IndexStats,
    ReplicaSet,
    Oplog,
    Sharding,
    ShardedDataDistribution,
}

impl Capability {
    pub const ALL: [Capability; 10] = [
        Capability::Opcounters,
        Capability::OpLatencies,
        Capability::DocumentMetrics,
        Capability::CommandMetrics,
        Capability::Connections,
        Capability::IndexStats,
        Capability::ReplicaSet,
        Capability::Oplog,
        Capability::Sharding,
        Capability::ShardedDataDistribution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Opcounters => "opcounters",
            Capability::OpLatencies => "op_latencies",
            Capability::DocumentMetrics => "document_metrics",
            Capability::CommandMetrics => "command_metrics",
            Capability::Connections => "connections",
            Capability::IndexStats => "index_stats",
            Capability::ReplicaSet => "replica_set",
            Capability::Oplog => "oplog",
            Capability::Sharding => "sharding",
            Capability::ShardedDataDistribution => "sharded_data_distribution",
        }
    }
}

/// What a connected server provides. `None` until known (serverStatus sections before the first answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities([Option<bool>; Capability::ALL.len()]);

impl Capabilities {
    /// What `buildInfo` and `hello` tell without trying anything.
    pub fn detect(build: &BuildInfo, topology: &Topology) -> Self {
        let mut capabilities = Capabilities::default();
        let mongos = *topology == Topology::Mongos;
        let (member, arbiter) = match topology {
            Topology::ReplicaSetMember { arbiter, .. } => (true, *arbiter),
            _ => (false, false),
        };
        capabilities.set(Capability::ReplicaSet, member);
        capabilities.set(Capability::Oplog, member && !arbiter);
        capabilities.set(Capability::Sharding, mongos);
        capabilities.set(
            Capability::ShardedDataDistribution,
            mongos && build.at_least(6, 0, 3) && build.has_stage(sharded_data_distribution::STAGE),
        );
        capabilities.set(Capability::IndexStats, build.has_stage(index_stats::STAGE));
        capabilities
    }

    pub fn set(&mut self, capability: Capability, available: bool) {
        self.0[capability as usize] = Some(available);
    }

    pub fn get(&self, capability: Capability) -> bool {
        self.0[capability as usize].unwrap_or(false)
    }

    /// The serverStatus sections the last answer carried.
    pub fn record_server_status(&mut self, status: &server_status::ServerStatus) {
        self.set(Capability::Opcounters, status.opcounters.is_some());
        self.set(Capability::OpLatencies, status.latencies.is_some());
        self.set(Capability::DocumentMetrics, status.documents.is_some());
        self.set(Capability::CommandMetrics, status.commands.is_some());
        self.set(Capability::Connections, status.connections.is_some());
    }

    pub fn samples(&self, out: &mut Vec<Sample>) {
        for capability in Capability::ALL {
            if let Some(available) = self.0[capability as usize] {
                out.push(CAPABILITY.sample_with([capability.as_str()], bool_value(available)));
            }
        }
    }
}

/// Facts learnt once per connection.
#[derive(Debug, Clone)]
struct ServerInfo {
    build: BuildInfo,
    capabilities: Capabilities,
}

pub struct MongoCollector {
    session: MongoSession,
    views: MongoViews,
    filter: DatabaseFilter,
    server: Option<ServerInfo>,
    server_status: server_status::ServerStatusState,
    index_state: index_stats::IndexStatsState,
    /// When index usage was last read, and what it gave, repeated until the interval has passed.
    index_cache: Option<(Instant, Vec<Sample>)>,
    view_log: crate::view_log::ViewLog,
}

impl MongoCollector {
    /// Builds the collector; it does not connect until the first poll.
    pub fn new(options: MongoOptions) -> Self {
        let filter = DatabaseFilter {
            include: options.views.databases_include.clone(),
            exclude: options.views.databases_exclude.clone(),
        };
        MongoCollector {
            view_log: crate::view_log::ViewLog::new(&options.target),
            views: options.views.clone(),
            session: MongoSession::new(options),
            filter,
            server: None,
            server_status: Default::default(),
            index_state: Default::default(),
            index_cache: None,
        }
    }

    /// One pass over the target's views.
    async fn read_views(&mut self) -> Result<Collected, CollectError> {
        let (conn, fresh) = self.session.conn().await?;
        let commands_before = conn.commands_sent();
        let mut collected = Collected::default();

        if fresh || self.server.is_none() {
            self.server_status.forget();
            self.index_cache = None;
            match detect(&conn, &mut collected.views).await {
                Ok(server) => {
                    self.session.connected();
                    self.server = Some(server);
                }
                Err((view, error)) => {
                    self.session.connect_failed();
                    self.server = None;
                    return Err(connection::connect_error(
                        self.session.target(),
                        view,
                        error,
                    ));
                }
            }
        }

        let MongoCollector {
            views,
            filter,
            server,
            server_status: status_state,
            index_state,
            index_cache,
            view_log,
            ..
        } = self;
        let Some(server) = server.as_mut() else {
            return Err(CollectError::Decode {
                view: build_info::VIEW,
                source: "server facts missing after detection".into(),
            });
        };
        let samples = &mut collected.samples;
        let mut run = ViewRunner::new(&mut collected.views, view_log);
        let capabilities = &mut server.capabilities;
        samples.push(server.build.sample());

        if let Ok(status) = run
            .try_view(server_status::VIEW, server_status::fetch(&conn))
            .await?
        {
            capabilities.record_server_status(&status);
            status_state.samples(status, Instant::now(), samples);
        }

        if views.replication && capabilities.get(Capability::ReplicaSet) {
            match run
                .try_view(repl_set_get_status::VIEW, repl_set_get_status::fetch(&conn))
                .await?
            {
                Ok(status) => status.samples(samples),
                Err(ErrorKind::Unsupported) => {
                    capabilities.set(Capability::ReplicaSet, false);
                    capabilities.set(Capability::Oplog, false);
                }
                Err(_) => {}
            }
        }

        if views.oplog && capabilities.get(Capability::Oplog) {
            match run.try_view(oplog::VIEW, oplog::fetch(&conn)).await? {
                Ok(bounds) => bounds.samples(samples),
                Err(ErrorKind::Unsupported) => capabilities.set(Capability::Oplog, false),
                Err(_) => {}
            }
        }

        if views.index_stats && capabilities.get(Capability::IndexStats) {
            let due = index_cache
                .as_ref()
                .is_none_or(|(read_at, _)| read_at.elapsed() >= views.index_stats_interval);
            if due {
                match index_round(&conn, &mut run, views, filter, index_state).await? {
                    IndexOutcome::Read(fresh) => {
                        samples.extend(fresh.iter().cloned());
                        *index_cache = Some((Instant::now(), fresh));
                    }
                    IndexOutcome::Unsupported => capabilities.set(Capability::IndexStats, false),
                    IndexOutcome::Failed => {}
                }
            } else if let Some((_, cached)) = index_cache.as_ref() {
                samples.extend(cached.iter().cloned());
            }
        }

        if views.sharding && capabilities.get(Capability::Sharding) {
            if let Ok(balancer) = run
                .try_view(balancer_status::VIEW, balancer_status::fetch(&conn))
                .await?
            {
                balancer.samples(samples);
            }
            let mut chunks_instead = !capabilities.get(Capability::ShardedDataDistribution);
            if !chunks_instead {
                match run
                    .try_view(
                        sharded_data_distribution::VIEW,
                        sharded_data_distribution::fetch(&conn),
                    )
                    .await?
                {
                    Ok(distribution) => sharded_data_distribution::samples(
                        &distribution,
                        filter,
                        views.max_collections,
                        samples,
                    ),
                    Err(ErrorKind::Unsupported) => {
                        capabilities.set(Capability::ShardedDataDistribution, false);
                        chunks_instead = true;
                    }
                    Err(_) => {}
                }
            }
            if chunks_instead {
                if let Ok(chunks) = run
                    .try_view(config_chunks::VIEW, config_chunks::fetch(&conn))
                    .await?
                {
                    config_chunks::samples(&chunks, samples);
                }
            }
        }

        capabilities.samples(samples);
        samples.push(POLL_COMMANDS.sample(f64::from(
            conn.commands_sent().wrapping_sub(commands_before),
        )));
        Ok(collected)
    }
}

/// `buildInfo` then `hello`. A failure names the command that failed.
async fn detect(
    conn: &Conn,
    views: &mut Vec<ViewOutcome>,
) -> Result<ServerInfo, (&'static str, MongoError)> {
    let started = Instant::now();
    let build = build_info::fetch(conn)
        .await
        .map_err(|error| (build_info::VIEW, error))?;
    views.push(ViewOutcome {
        view: build_info::VIEW,
        duration: started.elapsed(),
        error: None,
    });
    let started = Instant::now();
    let topology = hello::fetch(conn)
        .await
        .map_err(|error| (hello::VIEW, error))?;
    views.push(ViewOutcome {
        view: hello::VIEW,
        duration: started.elapsed(),
        error: None,
    });
    tracing::debug!(
        version = %build.version,
        flavor = build.flavor(),
        topology = ?topology,
        "mongodb server detected"
    );
    let capabilities = Capabilities::detect(&build, &topology);
    Ok(ServerInfo {
        build,
        capabilities,
    })
}

enum IndexOutcome {
    Read(Vec<Sample>),
    Unsupported,
    Failed,
}

/// Discovery then `$indexStats` over the discovered collections.
async fn index_round(
    conn: &Conn,
    run: &mut ViewRunner<'_>,
    views: &MongoViews,
    filter: &DatabaseFilter,
    state: &mut index_stats::IndexStatsState,
) -> Result<IndexOutcome, CollectError> {
    let discovery = match run
        .try_view(
            list_collections::VIEW,
            list_collections::fetch(conn, filter, views.max_collections),
        )
        .await?
    {
        Ok(discovery) => discovery,
        Err(_) => return Ok(IndexOutcome::Failed),
    };
    let round = match run
        .try_view(
            index_stats::VIEW,
            index_stats::fetch(conn, &discovery.namespaces),
        )
        .await?
    {
        Ok(round) => round,
        Err(ErrorKind::Unsupported) => return Ok(IndexOutcome::Unsupported),
        Err(_) => return Ok(IndexOutcome::Failed),
    };
    if let Some(kind) = round.partial_failure {
        run.mark_last_failed(kind);
    }
    let mut fresh = Vec::new();
    for usage in state.update(&round.accesses) {
        usage.samples(&mut fresh);
    }
    fresh.push(index_stats::COLLECTIONS.sample(round.collections as f64));
    fresh.push(index_stats::COLLECTIONS_SKIPPED.sample(discovery.skipped as f64));
    Ok(IndexOutcome::Read(fresh))
}

#[async_trait::async_trait]
impl Collector for MongoCollector {
    fn db(&self) -> &'static str {
        "mongodb"
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        self.read_views().await
    }

    fn abandon_connection(&mut self) {
        self.session.drop_connection();
        self.server = None;
    }

    async fn close(&mut self) {
        self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_the_url_never_print() {
        assert_eq!(
            redact_url("mongodb://watch:s3cret@db1:27017/?tls=true"),
            "mongodb://watch:<redacted>@db1:27017/?tls=true"
        );
        assert_eq!(redact_url("mongodb://db1:27017/"), "mongodb://db1:27017/");
        assert_eq!(redact_url("mongodb://watch@db1/"), "mongodb://watch@db1/");
        // Unencoded '/', '?', ':' and '@' in the password.
        for (url, expected) in [
            (
                "mongodb://watch:pa/ss@db1:27017/admin",
                "mongodb://watch:<redacted>@db1:27017/admin",
            ),
            (
                "mongodb://watch:p?a/s:s@w@db1,db2:27018/?replicaSet=rs0",
                "mongodb://watch:<redacted>@db1,db2:27018/?replicaSet=rs0",
            ),
            (
                "mongodb://[::1]:27017/?tls=true&tlsCertificateKeyFilePassword=s3cret&appName=x",
                "mongodb://[::1]:27017/?tls=true&tlsCertificateKeyFilePassword=<redacted>&appName=x",
            ),
            (
                "mongodb://AKIA:s3cret@db1/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:s3cret",
                "mongodb://AKIA:<redacted>@db1/?authMechanism=MONGODB-AWS&authMechanismProperties=<redacted>",
            ),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
        }
        assert!(!redact_url("mongodb://u:s3cret@").contains("s3cret"));
        assert!(!redact_url("mongodb://u:s3/cret@/tmp%2Fm.sock").contains("s3"));
        let options = MongoOptions {
            url: "mongodb+srv://watch:s3cret@cluster0.example.net/".into(),
            ..MongoOptions::default()
        };
        assert!(!format!("{options:?}").contains("s3cret"));
    }

    #[test]
    fn descriptors_are_unique_and_well_named() {
        let descriptors = descriptors();
        let mut names: Vec<&str> = descriptors.iter().map(|desc| desc.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for desc in descriptors {
            assert!(desc.name.starts_with("mongodb_"), "{}", desc.name);
            assert!(
                !desc.help.is_empty() && !desc.help.ends_with('.'),
                "{}",
                desc.name
            );
            assert_eq!(
                desc.kind == MetricKind::Counter,
                desc.name.ends_with("_total"),
                "{}",
                desc.name
            );
        }
    }

    fn build(version: &str, ferretdb: bool) -> BuildInfo {
        let mut answer = mongodb::bson::doc! { "version": version };
        if ferretdb {
            answer.insert("ferretdbVersion", "v1.24.2");
            answer.insert(
                "ferretdbFeatures",
                mongodb::bson::doc! { "aggregationStages": ["$match", "$collStats"] },
            );
        }
        build_info::parse(&answer).expect("buildInfo")
    }

    #[test]
    fn capabilities_follow_flavour_version_and_topology() {
        let ferret = Capabilities::detect(&build("7.0.77", true), &Topology::Standalone);
        assert!(!ferret.get(Capability::IndexStats));
        assert!(!ferret.get(Capability::ReplicaSet));
        assert!(!ferret.get(Capability::Sharding));

        let old_mongos = Capabilities::detect(&build("6.0.2", false), &Topology::Mongos);
        assert!(old_mongos.get(Capability::Sharding));
        assert!(!old_mongos.get(Capability::ShardedDataDistribution));
        let new_mongos = Capabilities::detect(&build("7.0.2", false), &Topology::Mongos);
        assert!(new_mongos.get(Capability::ShardedDataDistribution));

        let arbiter = Capabilities::detect(
            &build("7.0.2", false),
            &Topology::ReplicaSetMember {
                set_name: "rs0".into(),
                arbiter: true,
            },
        );
        assert!(arbiter.get(Capability::ReplicaSet));
        assert!(!arbiter.get(Capability::Oplog));

        // serverStatus-derived capabilities are not exported before the first answer.
        let mut samples = Vec::new();
        ferret.samples(&mut samples);
        assert!(!samples
            .iter()
            .any(|sample| sample.label("capability") == Some("opcounters")));
        assert_eq!(samples.len(), 5);
    }
}
