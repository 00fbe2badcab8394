//! [`TestPlatform`]: the core's in-memory adapters (KV, blobs, live rooms) with the SQLite
//! [`SqliteSql`], a job queue that keeps each job's due time ([`ScheduledJobs`]), outgoing
//! HTTP answered from per-URL scripts ([`ScriptedOutbound`]), a manual clock and seeded
//! randomness. Requests go through [`edgevideo_core::handle`] and jobs through
//! [`edgevideo_core::queue::run`], the entry points the hosts call.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use edgevideo_core::config::{Config, ConfigError};
use edgevideo_core::memory::{
    ManualClock, MemoryBlobs, MemoryEdgeCache, MemoryKv, MemoryLive, MemoryMailer,
};
use edgevideo_core::model::job::Job;
use edgevideo_core::ports::{
    Clock, Entropy, Jobs, Outbound, OutboundError, OutboundRequest, OutboundResponse, Platform,
};
use edgevideo_core::queue;
use edgevideo_core::StoreError;

use crate::exec::block_on;
use crate::sqlite::{SetupError, SqliteSql};

/// The clock's start: 2026-01-01T00:00:00Z, in Unix ms.
pub const START_MS: u64 = 1_767_225_600_000;

/// The origin requests are sent to and `PUBLIC_URL` names.
pub const ORIGIN: &str = "https://edge.test";

/// The transcoder's endpoint in the default configuration.
pub const TRANSCODER_URL: &str = "https://transcoder.test";

/// The transcoder's signing secret in the default configuration.
pub const TRANSCODER_SECRET: &str = "whsec_dGVzdGtpdC10cmFuc2NvZGVyLXNlY3JldC0wMDE=";

/// Email domain whose users become broadcasters at signup.
pub const BROADCASTER_DOMAIN: &str = "broadcast.test";

/// The admin's email.
pub const ADMIN_EMAIL: &str = "admin@edgevideo.test";

/// The variables of the default test deployment (development, diagnostics on, one PBKDF2
/// iteration so signups are fast).
pub const DEFAULT_VARS: &[(&str, &str)] = &[
    ("ENVIRONMENT", "development"),
    ("SESSION_SECRET", "dev-only-testkit-session"),
    ("URL_SIGNING_SECRET", "dev-only-testkit-urls"),
    ("DIAGNOSTICS", "on"),
    ("PASSWORD_ITERATIONS", "1"),
    ("BROADCASTER_DOMAINS", BROADCASTER_DOMAIN),
    ("ADMIN_EMAILS", ADMIN_EMAIL),
    ("SIGNUP_LIMIT_PER_IP", "1000000"),
    ("PUBLIC_URL", ORIGIN),
    ("TRANSCODER_URL", TRANSCODER_URL),
    ("TRANSCODER_SECRET", TRANSCODER_SECRET),
];

/// Why a test platform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TestPlatformError {
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// The database could not be set up.
    #[error("database: {0}")]
    Setup(#[from] SetupError),
}

/// Deterministic, NOT secure randomness for tests (SplitMix64): unlike a counter, it does
/// not repeat the ids and tokens of a long test.
#[derive(Debug)]
pub struct SeededEntropy {
    state: Cell<u64>,
}

impl SeededEntropy {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededEntropy {
            state: Cell::new(seed),
        }
    }

    fn next(&self) -> u64 {
        let state = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(state);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// A job waiting in [`ScheduledJobs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledJob {
    /// The job.
    pub job: Job,
    /// The delay it was enqueued with, in seconds.
    pub delay_s: u32,
    /// When it becomes due, Unix ms.
    pub due_ms: u64,
}

/// [`Jobs`] as a queue with due times: a job enqueued after `delay_s` is due that long after
/// the clock's time of enqueueing. [`TestPlatform::run_due_jobs`] is its consumer.
#[derive(Debug)]
pub struct ScheduledJobs {
    clock: Rc<ManualClock>,
    queue: RefCell<Vec<ScheduledJob>>,
    /// Every job ever enqueued, with its delay, oldest first.
    pub history: RefCell<Vec<(Job, u32)>>,
}

impl ScheduledJobs {
    /// An empty queue on `clock`.
    pub fn new(clock: Rc<ManualClock>) -> Self {
        ScheduledJobs {
            clock,
            queue: RefCell::new(Vec::new()),
            history: RefCell::new(Vec::new()),
        }
    }

    /// The jobs waiting, in the order they were enqueued.
    pub fn waiting(&self) -> Vec<ScheduledJob> {
        self.queue.borrow().clone()
    }

    /// Removes and returns the earliest due job (by due time, then enqueue order).
    pub fn take_due(&self, now_ms: u64) -> Option<ScheduledJob> {
        let mut queue = self.queue.borrow_mut();
        let index = queue
            .iter()
            .enumerate()
            .filter(|(_, j)| j.due_ms <= now_ms)
            .min_by_key(|(i, j)| (j.due_ms, *i))
            .map(|(i, _)| i)?;
        Some(queue.remove(index))
    }
}

impl Jobs for ScheduledJobs {
    async fn enqueue_after(&self, job: &Job, delay_s: u32) -> Result<(), StoreError> {
        let due_ms = self.clock.now_ms() + u64::from(delay_s) * 1000;
        self.queue.borrow_mut().push(ScheduledJob {
            job: job.clone(),
            delay_s,
            due_ms,
        });
        self.history.borrow_mut().push((job.clone(), delay_s));
        Ok(())
    }
}

/// [`Outbound`] that records every request and answers from a script per URL (200 with an
/// empty body when a URL has none left).
#[derive(Debug, Default)]
pub struct ScriptedOutbound {
    scripts: RefCell<BTreeMap<String, VecDeque<Result<OutboundResponse, OutboundError>>>>,
    /// Every request sent, oldest first.
    pub sent: RefCell<Vec<OutboundRequest>>,
}

impl ScriptedOutbound {
    /// Queues answers for requests to `url`, first first.
    pub fn script(
        &self,
        url: &str,
        answers: impl IntoIterator<Item = Result<OutboundResponse, OutboundError>>,
    ) {
        self.scripts
            .borrow_mut()
            .entry(url.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Queues answers with these status codes (empty bodies) for requests to `url`.
    pub fn script_statuses(&self, url: &str, statuses: &[u16]) {
        self.script(
            url,
            statuses.iter().map(|&status| {
                Ok(OutboundResponse {
                    status,
                    body: Vec::new(),
                })
            }),
        );
    }

    /// The requests sent to `url`, oldest first.
    pub fn sent_to(&self, url: &str) -> Vec<OutboundRequest> {
        self.sent
            .borrow()
            .iter()
            .filter(|r| r.url == url)
            .cloned()
            .collect()
    }
}

impl Outbound for ScriptedOutbound {
    async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let answer = self
            .scripts
            .borrow_mut()
            .get_mut(&request.url)
            .and_then(VecDeque::pop_front);
        self.sent.borrow_mut().push(request);
        answer.unwrap_or(Ok(OutboundResponse {
            status: 200,
            body: Vec::new(),
        }))
    }
}

/// One job run by [`TestPlatform::run_due_jobs`] and how it ended.
#[derive(Debug)]
pub struct JobRun {
    /// The job.
    pub job: Job,
    /// Its outcome (the error's text on failure).
    pub result: Result<(), String>,
}

/// A whole [`Platform`] in process, over a real SQL engine.
#[derive(Debug)]
pub struct TestPlatform {
    /// Configuration.
    pub config: Config,
    /// Key-value store (the core's in-memory adapter).
    pub kv: MemoryKv,
    /// SQL over SQLite with the shared migrations.
    pub sql: SqliteSql,
    /// Blob store (the core's in-memory adapter).
    pub blobs: MemoryBlobs,
    /// Live rooms, run in process (the core's in-memory adapter).
    pub live: MemoryLive,
    /// The job queue.
    pub jobs: ScheduledJobs,
    /// Outgoing HTTP.
    pub outbound: ScriptedOutbound,
    /// The edge cache (the core's in-memory adapter).
    pub edge_cache: MemoryEdgeCache,
    /// Outgoing mail, kept (the core's in-memory adapter; the end-to-end tests use a real
    /// SMTP server).
    pub mailer: MemoryMailer,
    /// The clock; moves only when told to.
    pub clock: Rc<ManualClock>,
    /// Randomness.
    pub entropy: SeededEntropy,
}

impl TestPlatform {
    /// A platform with [`DEFAULT_VARS`].
    ///
    /// # Panics
    /// When the database cannot be set up (a broken migration): tests cannot run then.
    pub fn new() -> Self {
        Self::with_vars(&[]).unwrap_or_else(|e| panic!("test platform: {e}"))
    }

    /// A platform with [`DEFAULT_VARS`] overridden by `vars` (an empty value unsets one).
    ///
    /// # Errors
    /// [`TestPlatformError`] when the configuration is refused or the database cannot be set
    /// up.
    pub fn with_vars(vars: &[(&str, &str)]) -> Result<Self, TestPlatformError> {
        let config = Config::from_lookup(|name| {
            vars.iter()
                .chain(DEFAULT_VARS)
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
                .filter(|v| !v.is_empty())
        })?;
        let clock = Rc::new(ManualClock::default());
        clock.now_ms.set(START_MS);
        Ok(TestPlatform {
            config,
            kv: MemoryKv::default(),
            sql: SqliteSql::open()?,
            blobs: MemoryBlobs::default(),
            live: MemoryLive::default(),
            jobs: ScheduledJobs::new(clock.clone()),
            outbound: ScriptedOutbound::default(),
            edge_cache: MemoryEdgeCache::default(),
            mailer: MemoryMailer::default(),
            clock,
            entropy: SeededEntropy::new(14),
        })
    }

    /// The clock's time, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms.get()
    }

    /// Moves the clock forward by `ms` (jobs that become due wait for
    /// [`TestPlatform::run_due_jobs`]).
    pub fn advance_ms(&self, ms: u64) {
        self.clock.now_ms.set(self.now_ms() + ms);
    }

    /// Runs the due jobs through the core's consumer ([`queue::run`]) one by one, earliest
    /// first, including those they enqueue that are due at once, until none is due. A failed
    /// job is not retried (its outcome says why).
    pub fn run_due_jobs(&self) -> Vec<JobRun> {
        let mut runs = Vec::new();
        while let Some(next) = self.jobs.take_due(self.now_ms()) {
            let result = block_on(queue::run(self, next.job.clone())).map_err(|e| e.to_string());
            runs.push(JobRun {
                job: next.job,
                result,
            });
        }
        runs
    }

    /// Takes every due job off the queue, earliest first, and runs them as one batch through
    /// the core's batch consumer ([`queue::run_batch`]), as the Cloudflare host runs a queue
    /// batch; returns each job with its outcome. Jobs the batch enqueues wait for the next
    /// call.
    pub fn run_due_batch(&self) -> Vec<JobRun> {
        let mut jobs = Vec::new();
        while let Some(next) = self.jobs.take_due(self.now_ms()) {
            jobs.push(next.job);
        }
        let outcomes = block_on(queue::run_batch(
            self,
            jobs.iter().cloned().map(Ok).collect(),
        ));
        jobs.into_iter()
            .zip(outcomes)
            .map(|(job, outcome)| JobRun {
                job,
                result: outcome.map_err(|e| e.to_string()),
            })
            .collect()
    }

    /// [`TestPlatform::run_due_jobs`], asserting that every job succeeded.
    ///
    /// # Panics
    /// When a job failed.
    pub fn settle(&self) -> Vec<Job> {
        self.run_due_jobs()
            .into_iter()
            .map(|run| match run.result {
                Ok(()) => run.job,
                Err(e) => panic!("job {:?} failed: {e}", run.job),
            })
            .collect()
    }
}

impl Default for TestPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl Platform for TestPlatform {
    type Kv = MemoryKv;
    type Sql = SqliteSql;
    type Blobs = MemoryBlobs;
    type Live = MemoryLive;
    type Jobs = ScheduledJobs;
    type Outbound = ScriptedOutbound;
    type EdgeCache = MemoryEdgeCache;
    type Mailer = MemoryMailer;

    fn config(&self) -> &Config {
        &self.config
    }
    fn kv(&self) -> &MemoryKv {
        &self.kv
    }
    fn sql(&self) -> &SqliteSql {
        &self.sql
    }
    fn blobs(&self) -> &MemoryBlobs {
        &self.blobs
    }
    fn live(&self) -> &MemoryLive {
        &self.live
    }
    fn jobs(&self) -> &ScheduledJobs {
        &self.jobs
    }
    fn outbound(&self) -> &ScriptedOutbound {
        &self.outbound
    }
    fn edge_cache(&self) -> &MemoryEdgeCache {
        &self.edge_cache
    }
    fn mailer(&self) -> &MemoryMailer {
        &self.mailer
    }
    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
    fn entropy(&self) -> &dyn Entropy {
        &self.entropy
    }
}
