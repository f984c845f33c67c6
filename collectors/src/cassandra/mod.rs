//! Cassandra collector over CQL only: virtual tables and `system.*` tables, no JMX, no agent.
//!
//! The target is the cluster. One driver session (one connection per node plus the control connection)
//! discovers the nodes from its cluster metadata, and every node is then polled on its own: virtual tables
//! and `system.compaction_history` are node-local, so each statement is pinned to its node with a
//! single-target load-balancing policy and never falls back to a neighbour. Per node and poll, in order:
//! the `system.local` probe (reachability, version, the node's clock); once per node connection the list of
//! virtual tables and the connection cap; then the six latency tables, `sstable_tasks`,
//! `compaction_history` (only entries since the last poll), `thread_pools`, `gossip_info`, `clients` and
//! `pending_hints`, each skipped when the node's version lacks it. A node whose probe fails is reported down
//! (`cassandra_node_reachable 0`), not dropped; a node that times out or drops its connection mid-poll is
//! left alone for the rest of the poll. Nodes are polled concurrently (bounded), the opt-in canary beside
//! them. `collect` fails only when no node at all answered.

pub mod availability;
pub mod canary;
pub mod clients;
pub mod compaction_history;
pub mod gossip_info;
pub mod latency_tables;
pub mod pending_hints;
pub mod session;
pub mod settings;
pub mod sstable_tasks;
pub mod system_local;
pub mod system_virtual_schema;
pub mod thread_pools;
pub mod tls;
pub mod values;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::cluster::Node;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::error::{CollectError, ErrorKind};
use crate::fleet;
use crate::metric::MetricDesc;
use crate::secret::PasswordSource;
use crate::view_log::ViewLog;
use crate::{Collected, Collector, ViewOutcome};

pub use canary::{CanaryConsistency, CanaryOptions};
pub use tls::{CassandraTls, CassandraTlsMode};

use canary::Canary;
use compaction_history::{Compaction, CompactionCursor};
use gossip_info::{GossipEntry, GossipView, PeerOpinion};
use latency_tables::{Interval, LatencyState, LatencyTable, Scope, TableFilter, TableLatency};
use pending_hints::HintFiles;
use session::{CqlError, CqlSession, SessionOptions};
use settings::ConnectionLimit;
use sstable_tasks::{Task, TaskKinds};
use system_local::LocalInfo;
use system_virtual_schema::VirtualTables;
use thread_pools::ThreadPool;

/// Every metric family this collector can emit.
pub fn descriptors() -> Vec<&'static MetricDesc> {
    [
        system_local::DESCRIPTORS,
        system_virtual_schema::DESCRIPTORS,
        latency_tables::DESCRIPTORS,
        sstable_tasks::DESCRIPTORS,
        compaction_history::DESCRIPTORS,
        thread_pools::DESCRIPTORS,
        gossip_info::DESCRIPTORS,
        availability::DESCRIPTORS,
        clients::DESCRIPTORS,
        canary::DESCRIPTORS,
    ]
    .concat()
}

/// Which views a target reads; all on by default. The canary is configured apart, off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CassandraViews {
    /// The six `*_latency` tables: per-table and per-node request counts and latencies, and the fleet latency.
    pub latency: bool,
    /// `sstable_tasks` (running) and `system.compaction_history` (finished) compactions.
    pub compaction: bool,
    /// `thread_pools`: active, pending and blocked tasks per pool.
    pub thread_pools: bool,
    /// `gossip_info`: each node's view of its peers, for `cassandra_node_peers` and the cluster view.
    pub gossip: bool,
    /// `clients` and the connection cap: the fleet connection signals.
    pub clients: bool,
    /// `pending_hints`: hint backlog per node and the fleet replication signals.
    pub hints: bool,
}

impl Default for CassandraViews {
    fn default() -> Self {
        CassandraViews {
            latency: true,
            compaction: true,
            thread_pools: true,
            gossip: true,
            clients: true,
            hints: true,
        }
    }
}

/// How to reach and poll one Cassandra cluster.
#[derive(Debug, Clone)]
pub struct CassandraOptions {
    /// The target's configured name, used in error messages.
    pub target: String,
    /// `host:port` of one or more nodes to bootstrap from; the rest of the cluster is discovered.
    pub contact_points: Vec<String>,
    /// The datacenter the canary's coordinators should come from (others only as fallback); `None`: any.
    pub local_datacenter: Option<String>,
    /// Role for PasswordAuthenticator clusters; `None` connects without credentials.
    pub user: Option<String>,
    pub password: Option<PasswordSource>,
    /// Bound on each TCP connect and on the session's first metadata read.
    pub connect_timeout: Duration,
    /// Client-side timeout of every monitoring statement (Cassandra has no per-request server timeout).
    pub request_timeout: Duration,
    /// Client-to-node TLS; off by default, as Cassandra's `client_encryption_options` are.
    pub tls: CassandraTls,
    /// How many nodes are polled at the same time.
    pub node_concurrency: usize,
    /// Export per-table latency series for system keyspaces too (they are never in node sums).
    pub include_system_keyspaces: bool,
    /// At most this many tables get per-table latency series per node and latency table, in name order;
    /// 0 keeps only the per-node sums.
    pub max_tables: usize,
    /// A peer whose gossip heartbeat has not moved for this long is down in the cluster view.
    pub peer_stale_after: Duration,
    pub views: CassandraViews,
    /// The consistency-level canary; `None` (the default) never writes to the cluster.
    pub canary: Option<CanaryOptions>,
}

impl Default for CassandraOptions {
    fn default() -> Self {
        CassandraOptions {
            target: "cassandra".into(),
            contact_points: vec!["127.0.0.1:9042".into()],
            local_datacenter: None,
            user: None,
            password: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            tls: CassandraTls::default(),
            node_concurrency: 8,
            include_system_keyspaces: false,
            max_tables: 500,
            peer_stale_after: Duration::from_secs(20),
            views: CassandraViews::default(),
            canary: None,
        }
    }
}

/// The labels every per-node series carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLabels {
    /// The node's address, as the driver reaches it.
    pub node: String,
    pub dc: String,
    pub rack: String,
}

impl NodeLabels {
    /// An unknown datacenter or rack is labelled `unknown`, never left empty.
    pub fn new(node: &str, dc: Option<&str>, rack: Option<&str>) -> Self {
        NodeLabels {
            node: node.to_owned(),
            dc: dc.unwrap_or("unknown").to_owned(),
            rack: rack.unwrap_or("unknown").to_owned(),
        }
    }

    fn of(node: &Node) -> Self {
        NodeLabels::new(
            &node.address.ip().to_string(),
            node.datacenter.as_deref(),
            node.rack.as_deref(),
        )
    }

    pub fn values(&self) -> [&str; 3] {
        [self.node.as_str(), self.dc.as_str(), self.rack.as_str()]
    }
}

/// Facts learnt once per node connection.
#[derive(Debug, Clone)]
struct NodeFacts {
    release_version: String,
    tables: VirtualTables,
    connection_limit: ConnectionLimit,
}

/// What the collector remembers about one node between polls.
#[derive(Debug, Default)]
struct NodeState {
    facts: Option<NodeFacts>,
    latency: LatencyState,
    compaction: CompactionCursor,
    task_kinds: TaskKinds,
    gossip: GossipView,
    /// Which views of this node are failing, so that one failing at every poll warns once.
    log: Option<ViewLog>,
}

/// What to read from one node this poll.
struct NodePlan {
    node: Arc<Node>,
    facts: Option<NodeFacts>,
    compaction_after: Option<i64>,
    views: CassandraViews,
    timeout: Duration,
    log: ViewLog,
}

/// What one node answered this poll. `local` is `None` when the node could not be reached.
#[derive(Default)]
struct NodeFetch {
    views: Vec<ViewOutcome>,
    local: Option<LocalInfo>,
    facts: Option<NodeFacts>,
    latency: Vec<(LatencyTable, Vec<TableLatency>)>,
    tasks: Option<Vec<Task>>,
    compactions: Option<Vec<Compaction>>,
    pools: Option<Vec<ThreadPool>>,
    gossip: Option<Vec<GossipEntry>>,
    clients: Option<f64>,
    hints: Option<Vec<HintFiles>>,
    log: Option<ViewLog>,
}

pub struct CassandraCollector {
    session: CqlSession,
    request_timeout: Duration,
    node_concurrency: usize,
    peer_stale_after: Duration,
    views: CassandraViews,
    filter: TableFilter,
    nodes: HashMap<String, NodeState>,
    canary: Option<Canary>,
}

impl CassandraCollector {
    /// Builds the collector; it does not connect until the first poll.
    pub fn new(options: CassandraOptions) -> Self {
        let filter = TableFilter {
            include_system_keyspaces: options.include_system_keyspaces,
            max_tables: options.max_tables,
            canary: options
                .canary
                .as_ref()
                .map(|canary| (canary.keyspace.clone(), canary.table.clone())),
        };
        CassandraCollector {
            session: CqlSession::new(SessionOptions {
                target: options.target,
                contact_points: options.contact_points,
                local_datacenter: options.local_datacenter,
                user: options.user,
                password: options.password,
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
                tls: options.tls,
            }),
            request_timeout: options.request_timeout,
            node_concurrency: options.node_concurrency.max(1),
            peer_stale_after: options.peer_stale_after,
            views: options.views,
            filter,
            nodes: HashMap::new(),
            canary: options.canary.map(Canary::new),
        }
    }

    fn forget_connection_facts(&mut self) {
        for state in self.nodes.values_mut() {
            state.facts = None;
        }
    }

    /// One pass over the target's views.
    async fn read_views(&mut self) -> Result<Collected, CollectError> {
        let (session, fresh) = self.session.session().await?;
        if fresh {
            self.forget_connection_facts();
        }
        let cluster = session.get_cluster_state();
        let nodes: Vec<Arc<Node>> = cluster.get_nodes_info().to_vec();
        if nodes.is_empty() {
            return Err(CollectError::Connect {
                target: self.session.target().to_owned(),
                source: "the cluster metadata lists no node".into(),
            });
        }
        let host_ids: Vec<String> = nodes.iter().map(|node| node.host_id.to_string()).collect();
        self.nodes.retain(|host_id, _| host_ids.contains(host_id));

        let plans: Vec<NodePlan> = nodes
            .iter()
            .zip(&host_ids)
            .map(|(node, host_id)| {
                let state = self.nodes.entry(host_id.clone()).or_default();
                let log = state.log.take().unwrap_or_else(|| {
                    ViewLog::for_node(self.session.target(), &node.address.to_string())
                });
                NodePlan {
                    log,
                    node: Arc::clone(node),
                    facts: state.facts.clone(),
                    compaction_after: state.compaction.after_ms(),
                    views: self.views,
                    timeout: self.request_timeout,
                }
            })
            .collect();

        let canary = self.canary.as_ref();
        let canary_run = async {
            match canary {
                Some(canary) => canary.run(&session).await,
                None => Vec::new(),
            }
        };
        let (fetches, attempts) = tokio::join!(
            fetch_all(&session, plans, self.node_concurrency),
            canary_run
        );

        let mut collected = Collected::default();
        let samples = &mut collected.samples;
        let mut reachable = 0usize;
        let mut fleet_latency = Interval::default();
        let mut connections = Vec::new();
        let mut opinions: Vec<PeerOpinion> = Vec::new();
        let mut hint_holders: Vec<(i64, Vec<HintFiles>)> = Vec::new();
        let mut reach = Vec::with_capacity(nodes.len());
        let labels: Vec<NodeLabels> = nodes.iter().map(|node| NodeLabels::of(node)).collect();
        let now = Instant::now();

        for ((fetch, host_id), labels) in fetches.into_iter().zip(&host_ids).zip(&labels) {
            let fetch = fetch.unwrap_or_default();
            collected.views.extend(fetch.views);
            let state = self.nodes.entry(host_id.clone()).or_default();
            state.log = fetch.log;
            let Some(local) = fetch.local else {
                // Unreachable: its facts belong to a connection that is gone.
                state.facts = None;
                system_local::samples(labels, false, None, samples);
                reach.push(false);
                continue;
            };
            reachable += 1;
            reach.push(true);
            state.facts = fetch.facts;
            system_local::samples(
                labels,
                true,
                Some((host_id, &local.release_version)),
                samples,
            );
            if let Some(facts) = &state.facts {
                facts.tables.samples(labels, samples);
            }
            for (table, readings) in &fetch.latency {
                let interval =
                    state
                        .latency
                        .samples(labels, *table, readings, &self.filter, samples);
                if table.scope == Scope::Coordinator {
                    fleet_latency.add(interval);
                }
            }
            if self.views.compaction {
                match (&fetch.compactions, state.compaction.after_ms()) {
                    (_, None) => state.compaction.start(local.now_ms),
                    (Some(compactions), Some(_)) => {
                        state.compaction.absorb(local.now_ms, compactions)
                    }
                    (None, Some(_)) => {}
                }
                state.compaction.samples(labels, samples);
            }
            if let Some(tasks) = &fetch.tasks {
                state.task_kinds.samples(labels, tasks, samples);
            }
            if let Some(pools) = &fetch.pools {
                thread_pools::samples(labels, pools, samples);
            }
            if let Some(entries) = &fetch.gossip {
                let node_opinions =
                    state
                        .gossip
                        .observe(host_id, entries, now, self.peer_stale_after);
                gossip_info::samples(labels, &node_opinions, samples);
                opinions.extend(node_opinions);
            }
            if let (Some(clients), Some(facts)) = (fetch.clients, &state.facts) {
                clients::node_samples(labels, clients, facts.connection_limit, samples);
                connections.push((clients, facts.connection_limit));
            }
            if let Some(hints) = fetch.hints {
                hint_holders.push((local.now_ms, hints));
            }
        }

        if reachable == 0 {
            return Err(CollectError::Connect {
                target: self.session.target().to_owned(),
                source: format!("none of the {} nodes answered", nodes.len()).into(),
            });
        }

        if self.views.latency {
            samples.push(fleet::DB_QUERY_LATENCY_AVG_SECONDS.sample(fleet_latency.median()));
        }
        clients::fleet_samples(&connections, samples);
        let members: Vec<availability::Member<'_>> = labels
            .iter()
            .zip(&host_ids)
            .zip(&reach)
            .map(|((labels, host_id), reachable)| availability::Member {
                labels,
                host_id,
                reachable: *reachable,
            })
            .collect();
        let backlog =
            (!hint_holders.is_empty()).then(|| pending_hints::backlog_by_replica(&hint_holders));
        availability::samples(&members, &opinions, backlog.as_ref(), samples);

        if let Some(canary) = self.canary.as_mut() {
            canary.samples(&attempts, samples);
            canary::view_outcomes(&attempts, &mut collected.views);
        }
        Ok(collected)
    }
}

#[async_trait::async_trait]
impl Collector for CassandraCollector {
    fn db(&self) -> &'static str {
        "cassandra"
    }

    async fn poll(&mut self) -> Result<Collected, CollectError> {
        self.read_views().await
    }

    fn abandon_connection(&mut self) {
        self.session.drop_session();
        self.forget_connection_facts();
    }

    async fn close(&mut self) {
        self.session.drop_session();
    }
}

/// Polls every node, at most `concurrency` at a time, in the nodes' order. A node whose task died has `None`.
/// Dropping the future aborts every statement in flight.
async fn fetch_all(
    session: &Arc<Session>,
    plans: Vec<NodePlan>,
    concurrency: usize,
) -> Vec<Option<NodeFetch>> {
    let semaphore = Arc::new(Semaphore::new(concurrency));
    let mut results: Vec<Option<NodeFetch>> = plans.iter().map(|_| None).collect();
    let mut tasks = JoinSet::new();
    for (index, plan) in plans.into_iter().enumerate() {
        let session = Arc::clone(session);
        let semaphore = Arc::clone(&semaphore);
        tasks.spawn(async move {
            // The semaphore is never closed; if it were, polling unthrottled is the better failure.
            let _permit = semaphore.acquire_owned().await.ok();
            (index, fetch_node(&session, plan).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, fetch)) => {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(fetch);
                }
            }
            Err(error) => tracing::warn!(error = %error, "node poll task ended abnormally"),
        }
    }
    results
}

/// Runs one node's statements in order, recording each as a view outcome. After a timeout or a lost
/// connection the node is not asked anything else this poll: each further statement would only wait out
/// its own timeout.
struct NodeRun {
    views: Vec<ViewOutcome>,
    broken: bool,
    log: ViewLog,
}

impl NodeRun {
    async fn step<T>(
        &mut self,
        view: &'static str,
        statement: impl Future<Output = Result<T, CqlError>>,
    ) -> Option<T> {
        if self.broken {
            return None;
        }
        let started = Instant::now();
        let result = statement.await;
        let duration = started.elapsed();
        match result {
            Ok(value) => {
                self.log.succeeded(view);
                self.views.push(ViewOutcome {
                    view,
                    duration,
                    error: None,
                });
                Some(value)
            }
            Err(error) => {
                let kind = error.kind();
                self.log.failed(view, &error);
                if matches!(
                    kind,
                    ErrorKind::Connect | ErrorKind::Tls | ErrorKind::Timeout
                ) {
                    self.broken = true;
                }
                self.views.push(ViewOutcome {
                    view,
                    duration,
                    error: Some(kind),
                });
                None
            }
        }
    }
}

async fn fetch_node(session: &Session, plan: NodePlan) -> NodeFetch {
    let node = &plan.node;
    let timeout = plan.timeout;
    let views = plan.views;
    let mut run = NodeRun {
        views: Vec::new(),
        broken: false,
        log: plan.log,
    };
    let mut fetch = NodeFetch::default();

    let Some(local) = run
        .step(
            system_local::VIEW,
            system_local::fetch(session, node, timeout),
        )
        .await
    else {
        fetch.views = run.views;
        fetch.log = Some(run.log);
        return fetch;
    };

    // Facts are per connection; a changed version means the node was restarted on a new release.
    let known = plan
        .facts
        .filter(|facts| facts.release_version == local.release_version);
    let facts = match known {
        Some(facts) => Some(facts),
        None => detect_facts(&mut run, session, node, timeout, &local).await,
    };

    if let Some(facts) = &facts {
        let tables = &facts.tables;
        if views.latency {
            for table in latency_tables::TABLES {
                if !tables.has(table.name()) {
                    continue;
                }
                if let Some(readings) = run
                    .step(
                        table.view(),
                        latency_tables::fetch(session, node, table, timeout),
                    )
                    .await
                {
                    fetch.latency.push((table, readings));
                }
            }
        }
        if views.compaction && tables.has("sstable_tasks") {
            fetch.tasks = run
                .step(
                    sstable_tasks::VIEW,
                    sstable_tasks::fetch(session, node, timeout),
                )
                .await;
        }
    }
    if views.compaction {
        if let Some(after_ms) = plan.compaction_after {
            fetch.compactions = run
                .step(
                    compaction_history::VIEW,
                    compaction_history::fetch(session, node, after_ms, timeout),
                )
                .await;
        }
    }
    if let Some(facts) = &facts {
        let tables = &facts.tables;
        if views.thread_pools && tables.has("thread_pools") {
            fetch.pools = run
                .step(
                    thread_pools::VIEW,
                    thread_pools::fetch(session, node, timeout),
                )
                .await;
        }
        if views.gossip && tables.has("gossip_info") {
            fetch.gossip = run
                .step(
                    gossip_info::VIEW,
                    gossip_info::fetch(session, node, timeout),
                )
                .await;
        }
        if views.clients && tables.has("clients") {
            fetch.clients = run
                .step(clients::VIEW, clients::fetch(session, node, timeout))
                .await;
        }
        if views.hints && tables.has("pending_hints") {
            fetch.hints = run
                .step(
                    pending_hints::VIEW,
                    pending_hints::fetch(session, node, timeout),
                )
                .await;
        }
    }

    fetch.local = Some(local);
    fetch.facts = facts;
    fetch.views = run.views;
    fetch.log = Some(run.log);
    fetch
}

/// Reads the node's virtual tables and connection cap. `None` when the list could not be read: the
/// virtual-table views are skipped this poll and detection is tried again next poll.
async fn detect_facts(
    run: &mut NodeRun,
    session: &Session,
    node: &Arc<Node>,
    timeout: Duration,
    local: &LocalInfo,
) -> Option<NodeFacts> {
    let tables = run
        .step(
            system_virtual_schema::VIEW,
            system_virtual_schema::fetch(session, node, timeout),
        )
        .await?;
    let connection_limit = if tables.has("settings") {
        run.step(settings::VIEW, settings::fetch(session, node, timeout))
            .await
            .unwrap_or(ConnectionLimit::Unknown)
    } else {
        ConnectionLimit::Unknown
    };
    Some(NodeFacts {
        release_version: local.release_version.clone(),
        tables,
        connection_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique_prefixed_and_documented() {
        let all = descriptors();
        let mut names: Vec<&str> = all.iter().map(|desc| desc.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for desc in all {
            assert!(desc.name.starts_with("cassandra_"), "{}", desc.name);
            assert!(
                !desc.help.is_empty() && !desc.help.ends_with('.'),
                "{}",
                desc.name
            );
            let is_counter = desc.kind == crate::metric::MetricKind::Counter;
            assert_eq!(is_counter, desc.name.ends_with("_total"), "{}", desc.name);
        }
    }

    #[tokio::test]
    async fn a_node_that_drops_its_connection_is_asked_nothing_more() {
        let mut run = NodeRun {
            views: Vec::new(),
            broken: false,
            log: ViewLog::for_node("events", "127.0.0.2:19042"),
        };
        let missing_view = CqlError::from(scylla::errors::ExecutionError::LastAttemptError(
            scylla::errors::RequestAttemptError::DbError(
                scylla::errors::DbError::Invalid,
                "unconfigured table".into(),
            ),
        ));
        assert_eq!(
            run.step("a", async { Err::<(), _>(missing_view) }).await,
            None
        );
        assert!(!run.broken, "a missing view is not the node's fault");
        assert_eq!(run.step("b", async { Ok(1) }).await, Some(1));
        let lost = CqlError::from(scylla::errors::ExecutionError::EmptyPlan);
        assert_eq!(run.step("c", async { Err::<(), _>(lost) }).await, None);
        assert_eq!(run.step("d", async { Ok(2) }).await, None);
        let outcomes: Vec<_> = run
            .views
            .iter()
            .map(|view| (view.view, view.error))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("a", Some(ErrorKind::Unsupported)),
                ("b", None),
                ("c", Some(ErrorKind::Connect)),
            ]
        );
    }

    #[test]
    fn labels_never_leave_dc_or_rack_empty() {
        let labels = NodeLabels::new("10.0.0.1", None, Some("r1"));
        assert_eq!(labels.values(), ["10.0.0.1", "unknown", "r1"]);
    }

    #[test]
    fn defaults_read_everything_and_never_write() {
        let options = CassandraOptions::default();
        assert!(options.canary.is_none());
        assert_eq!(options.views, CassandraViews::default());
        assert!(options.views.latency && options.views.hints);
    }
}
