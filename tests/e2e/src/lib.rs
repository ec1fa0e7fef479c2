//! The end-to-end test harness. One PostgreSQL cluster per test binary, started on first use
//! from the installed extension (`cargo pgrx install`), with `whatsapp_channel` preloaded, the
//! webhook listener on a free loopback port and the Graph API URL pointing at a [`GraphSim`].
//! Tests share the cluster but never a channel, so they run in parallel. The cluster is
//! stopped and deleted when the test process exits (a watchdog child waits for our pipe to close).

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wa_sim::graph::{Directory, GraphSim, Options, WebhookTarget};

pub use wa_sim;
pub use whatsapp_cloud;

/// Generous deadline for anything asynchronous (a worker noticing a commit, a retry).
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Cluster {
    dir: PathBuf,
    /// The PostgreSQL binaries it runs on (`pg_config --bindir` of PG_CONFIG when it started).
    bin: PathBuf,
    port: u16,
    pub listener: String,
    pub graph: GraphSim,
    /// Channels for which the simulator posts sent/delivered/read webhooks back.
    status_targets: Arc<StatusTargets>,
    _watchdog: Child,
}

/// The cluster of this test binary.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(Options::default(), "", None))
}

/// Whether this initdb turns data checksums on unless told not to (PostgreSQL 18 and later).
fn initdb_checksums_default_on(bin: &Path) -> bool {
    let out = Command::new(bin.join("initdb")).arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--no-data-checksums")
}

/// The binaries of the PostgreSQL that PG_CONFIG names.
pub fn bindir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--bindir").output().unwrap_or_else(|e| panic!("{pg_config}: {e}"));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn sharedir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--sharedir").output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A command that runs as the server's owner: `postgres` when we are root (Postgres refuses root).
fn as_owner(program: &Path) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    // A backtrace in every ERROR's DETAIL is noise for a server; users do not run with it.
    cmd.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE");
    cmd
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `cmd`, failing the test with its output if it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A cluster of one's own, for tests that crash or restart it; its Graph API simulator
    /// answers after `graph_latency`. Stopped and deleted when the test process ends.
    pub fn private(graph_latency: Duration) -> Cluster {
        Cluster::start(Options { latency: graph_latency, ..Options::default() }, "", None)
    }

    /// A cluster of one's own with these lines added to its postgresql.conf.
    pub fn private_with(conf: &str) -> Cluster {
        Cluster::start(Options::default(), conf, None)
    }

    /// A cluster of one's own whose extension is created at an earlier release (its script
    /// from sql/released/, which scripts/test.sh installs beside the current one).
    pub fn private_at_version(version: &str) -> Cluster {
        Cluster::start(Options::default(), "", Some(version))
    }

    fn start(options: Options, extra_conf: &str, version: Option<&str>) -> Cluster {
        assert!(
            sharedir().join("extension/whatsapp_channel.control").exists(),
            "whatsapp_channel is not installed: run scripts/test.sh (or cargo pgrx install) first"
        );
        let cluster = Cluster::launch(options, extra_conf, |bin, data| {
            run(as_owner(&bin.join("initdb")).args([
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]))
        });
        let mut client = cluster.connect();
        // scripts/test.sh says which major it installed for; make sure that is what runs.
        if let Ok(major) = std::env::var("PG_MAJOR") {
            let version: String = client.query_one("SHOW server_version_num", &[]).unwrap().get(0);
            assert_eq!(&version[..2], major, "PG_MAJOR={major} but the cluster runs {version} (PG_CONFIG?)");
        }
        match version {
            None => client.batch_execute("CREATE EXTENSION whatsapp_channel").unwrap(),
            Some(v) => client.batch_execute(&format!("CREATE EXTENSION whatsapp_channel VERSION '{v}'")).unwrap(),
        }
        // pg_ctl returns once the server takes connections; its workers start a moment later
        // (later still on a busy machine). Tests begin once the listener is bound, unless they
        // moved it elsewhere themselves.
        if !extra_conf.contains("listen_address") {
            let bound = poll(|| std::net::TcpStream::connect(&cluster.listener).ok());
            assert!(bound.is_some(), "the webhook listener never bound {}:\n{}", cluster.listener, cluster.log());
        }
        cluster
    }

    /// A hot standby of this cluster (`pg_basebackup -R`, streaming from it), with a port, a
    /// listener address and a Graph API simulator of its own. Stopped and deleted at exit.
    pub fn standby(&self) -> Cluster {
        let (primary_socket, primary_port) = (self.dir.display().to_string(), self.port.to_string());
        Cluster::launch(Options::default(), "", |bin, data| {
            run(as_owner(&bin.join("pg_basebackup")).args([
                "-D",
                data.to_str().unwrap(),
                "-h",
                &primary_socket,
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ]))
        })
    }

    /// A cluster made by `pg_upgrade` from `old` (stopped first), on the binaries PG_CONFIG names
    /// now: a new data directory of that major, the old one's data moved into it, then our
    /// settings and a start. Its extension is the one `old` had, data included.
    pub fn upgraded_from(old: &Cluster) -> Cluster {
        let checksums: String = old.connect().query_one("SHOW data_checksums", &[]).unwrap().get(0);
        old.stop();
        let old_data = old.dir.join("data");
        let old_bin = old.bin.clone();
        let cluster = Cluster::launch(Options::default(), "", |bin, data| {
            // A new cluster of the old one's settings (pg_upgrade refuses a difference), data
            // checksums included, which initdb turns on by default since PostgreSQL 18.
            let mut initdb = as_owner(&bin.join("initdb"));
            initdb.args(["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]);
            if checksums == "on" {
                initdb.arg("--data-checksums");
            } else if initdb_checksums_default_on(bin) {
                initdb.arg("--no-data-checksums");
            }
            run(&mut initdb);
            let work = data.parent().unwrap();
            run(as_owner(&bin.join("pg_upgrade"))
                .current_dir(work)
                .args(["-b", old_bin.to_str().unwrap(), "-B", bin.to_str().unwrap()])
                .args(["-d", old_data.to_str().unwrap(), "-D", data.to_str().unwrap()])
                .args(["-p", &free_port().to_string(), "-P", &free_port().to_string(), "-U", "postgres"])
                .args(["-s", work.to_str().unwrap()]));
        });
        let bound = poll(|| std::net::TcpStream::connect(&cluster.listener).ok());
        assert!(bound.is_some(), "the webhook listener never bound {}:\n{}", cluster.listener, cluster.log());
        cluster
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server (fast shutdown: sessions are ended, the workers exit cleanly).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        run(as_owner(&self.bin.join("pg_ctl")).args(["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"]));
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        run(as_owner(&self.bin.join("pg_ctl")).args([
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            "start",
        ]));
    }

    /// The server's major version, e.g. 15.
    pub fn major(&self) -> u32 {
        let version: String = self.connect().query_one("SHOW server_version_num", &[]).unwrap().get(0);
        version[..2].parse().unwrap()
    }

    /// Promotes this standby to a primary (`pg_ctl promote`, waiting until it is one).
    pub fn promote(&self) {
        let data = self.dir.join("data");
        run(as_owner(&self.bin.join("pg_ctl")).args(["-D", data.to_str().unwrap(), "-w", "promote"]));
    }

    /// A server in a new directory: `make_data` fills its data directory, our settings are
    /// appended to its postgresql.conf (later lines win), and it is started, with a watchdog
    /// that stops it and deletes its files when this process ends, however it ends.
    fn launch(options: Options, extra_conf: &str, make_data: impl FnOnce(&Path, &Path)) -> Cluster {
        let status_targets = Arc::new(StatusTargets::default());
        let options = Options { statuses: Some(status_targets.clone()), ..options };
        let graph = GraphSim::start_with(0, options).expect("starting the Graph API simulator");
        static N: AtomicU32 = AtomicU32::new(0);
        let dir =
            std::env::temp_dir().join(format!("wa-e2e-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(Command::new("chown").args(["postgres:", dir.to_str().unwrap()]));
        }
        let data = dir.join("data");
        let bin = bindir();
        make_data(&bin, &data);
        let port = free_port();
        let listener = format!("127.0.0.1:{}", free_port());
        let conf = format!(
            "\n# written by the e2e harness\nport = {port}\nlisten_addresses = ''\nunix_socket_directories = '{dir}'\n\
             shared_preload_libraries = 'whatsapp_channel'\n\
             whatsapp_channel.listen_address = '{listener}'\n\
             whatsapp_channel.graph_api_url = '{graph}'\n\
             whatsapp_channel.database = 'postgres'\n\
             fsync = off\ntrack_functions = 'pl'\n\
             # One listener worker, whatever the machine: the tests of budgets, caps and the\n\
             # listener's own memory speak to one; tests/listener_workers.rs runs several.\n\
             whatsapp_channel.listener_workers = 1\n{extra_conf}\n",
            dir = dir.display(),
            graph = graph.url()
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        run(as_owner(&bin.join("pg_ctl")).args([
            "-D",
            data.to_str().unwrap(),
            "-l",
            dir.join("server.log").to_str().unwrap(),
            "-w",
            "start",
        ]));
        // The child reads our end of a pipe, which the kernel closes when we exit.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat >/dev/null; {} -D '{}' -m immediate stop >/dev/null 2>&1; rm -rf '{}'",
                if is_root() {
                    format!("runuser -u postgres -- {}", bin.join("pg_ctl").display())
                } else {
                    bin.join("pg_ctl").display().to_string()
                },
                data.display(),
                dir.display()
            ))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        Cluster { dir, bin, port, listener, graph, status_targets, _watchdog: watchdog }
    }

    /// SIGKILLs the postmaster (as a machine crash would end it), then starts the server again:
    /// crash recovery runs, and the workers come back.
    pub fn crash_and_restart(&self) {
        let pid = self.postmaster_pid();
        run(Command::new("kill").args(["-KILL", &pid.to_string()]));
        // Its children notice the postmaster is gone and exit; wait until the socket is free.
        let bin = &self.bin;
        let data = self.dir.join("data");
        let started = poll(|| {
            let out = as_owner(&bin.join("pg_ctl"))
                .args([
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    self.dir.join("server.log").to_str().unwrap(),
                    "-w",
                    "start",
                ])
                .output()
                .unwrap();
            out.status.success().then_some(())
        });
        assert!(started.is_some(), "the server did not start again after the crash:\n{}", self.log());
    }

    /// The pid of the running backend or worker of this type (e.g. `whatsapp_channel webhook
    /// listener`), waiting for it to be there.
    pub fn backend_pid(&self, backend_type: &str) -> i32 {
        poll(|| {
            self.connect()
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = $1 ORDER BY backend_start, pid LIMIT 1",
                    &[&backend_type],
                )
                .ok()
                .flatten()
        })
        .unwrap_or_else(|| panic!("no {backend_type} running"))
        .get(0)
    }

    /// SIGKILLs one backend or worker; the postmaster then resets every process (crash recovery).
    pub fn kill_backend(&self, backend_type: &str) {
        let pid = self.backend_pid(backend_type);
        run(Command::new("kill").args(["-KILL", &pid.to_string()]));
    }

    fn postmaster_pid(&self) -> i32 {
        let pidfile = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        pidfile.lines().next().unwrap().trim().parse().unwrap()
    }

    /// A connection once the server accepts them again (after a crash).
    pub fn connect_when_up(&self) -> Client {
        poll(|| Client::connect(&self.dsn(), NoTls).ok()).expect("the server accepts connections again")
    }

    /// libpq connection string of the test database (superuser `postgres`, unix socket).
    pub fn dsn(&self) -> String {
        format!("host={} port={} user=postgres dbname=postgres", self.dir.display(), self.port)
    }

    /// A new connection as the superuser `postgres`.
    pub fn connect(&self) -> Client {
        Client::connect(&self.dsn(), NoTls).unwrap()
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Waits until the server log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) {
        if poll(|| self.log().contains(needle).then_some(())).is_none() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!("the server log never said: {needle}\n--- last lines, newest first ---\n{}", tail.join("\n"));
        }
    }

    /// Writes `contents` to `name` in the cluster's directory, owned by the server's owner with
    /// `mode` (a TLS key must be 0600), and returns its path.
    pub fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        if is_root() {
            run(Command::new("chown").args(["postgres:", path.to_str().unwrap()]));
        }
        path
    }

    /// `http://127.0.0.1:<port>/webhook/<channel>`.
    pub fn webhook_url(&self, channel: &str) -> String {
        format!("http://{}/webhook/{channel}", self.listener)
    }

    /// The path of an extension script file (`whatsapp_channel--0.1.0.sql`) where the server looks.
    pub fn extension_file(name: &str) -> PathBuf {
        sharedir().join("extension").join(name)
    }

    /// A new connection to another database of this cluster.
    pub fn connect_to(&self, database: &str) -> Client {
        Client::connect(
            &format!("host={} port={} user=postgres dbname={database}", self.dir.display(), self.port),
            NoTls,
        )
        .unwrap()
    }

    /// Creates a channel with fresh, valid credentials; the Graph API simulator requires its token.
    pub fn add_channel(&self, prefix: &str) -> Channel {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let channel = Channel {
            name: format!("{prefix}-{n}"),
            phone_number_id: format!("1065403522{:05}", n),
            access_token: format!("EAAGsimulated{n:08}token"),
            app_secret: format!("{:032x}", 0xabc0_0000u64 + u64::from(n)),
            verify_token: format!("verify_{prefix}_{n}"),
        };
        let id: i64 = self
            .connect()
            .query_one(
                "SELECT wa_add_channel($1, $2, $3, $4, $5)",
                &[
                    &channel.name,
                    &channel.phone_number_id,
                    &channel.access_token,
                    &channel.app_secret,
                    &channel.verify_token,
                ],
            )
            .unwrap()
            .get(0);
        assert!(id > 0);
        self.graph.require_token(&channel.phone_number_id, &channel.access_token);
        channel
    }
}

/// The simulator's status webhooks go only to channels a test asked for, so that the other
/// tests see exactly the statuses they post themselves.
#[derive(Default)]
struct StatusTargets(Mutex<HashMap<String, WebhookTarget>>);

impl Directory for StatusTargets {
    fn lookup(&self, phone_number_id: &str) -> Option<WebhookTarget> {
        self.0.lock().unwrap().get(phone_number_id).cloned()
    }
}

impl Cluster {
    /// From now on the simulator posts signed sent/delivered/read webhooks for `channel`'s sends.
    pub fn enable_status_webhooks(&self, channel: &Channel) {
        let target = WebhookTarget { url: self.webhook_url(&channel.name), app_secret: channel.app_secret.clone() };
        self.status_targets.0.lock().unwrap().insert(channel.phone_number_id.clone(), target);
    }
}

#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: String,
    pub verify_token: String,
}

/// An HTTP answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn http_get(url: &str) -> Answer {
    try_http_get(url).unwrap()
}

/// A GET that may fail to get any answer (nothing listens yet).
pub fn try_http_get(url: &str) -> Result<Answer, String> {
    let mut r = agent().get(url).call().map_err(|e| e.to_string())?;
    Ok(Answer { status: r.status().as_u16(), body: r.body_mut().read_to_string().map_err(|e| e.to_string())? })
}

/// POSTs `body` with the given `X-Hub-Signature-256` header (none if `None`).
pub fn http_post(url: &str, body: &[u8], signature: Option<&str>) -> Answer {
    try_http_post(url, body, signature).unwrap()
}

/// A POST that may fail to get any answer (the server is down, the connection drops).
pub fn try_http_post(url: &str, body: &[u8], signature: Option<&str>) -> Result<Answer, String> {
    let mut request = agent().post(url).content_type("application/json");
    if let Some(s) = signature {
        request = request.header("X-Hub-Signature-256", s);
    }
    let mut r = request.send(body).map_err(|e| e.to_string())?;
    Ok(Answer { status: r.status().as_u16(), body: r.body_mut().read_to_string().map_err(|e| e.to_string())? })
}

impl Channel {
    /// The customer `wa_id` (digits) writes to this channel, which opens the 24-hour window in
    /// which free-form messages may be sent to them. Returns the inbound message's wamid.
    pub fn customer_writes(&self, wa_id: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let wamid = format!("wamid.hello.{}.{}", self.name, N.fetch_add(1, Ordering::Relaxed));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let payload = wa_sim::payloads::text_message(&self.phone_number_id, &wamid, wa_id, "Customer", "Hello", now);
        assert_eq!(self.post_signed(&payload).status, 200);
        wamid
    }

    /// POSTs `payload` to this channel's webhook URL, signed with its app secret, as Meta does.
    pub fn post_signed(&self, payload: &serde_json::Value) -> Answer {
        self.post_signed_to(cluster(), payload).unwrap()
    }

    /// The same, to the listener of `cluster` (a private one); `Err` when no answer came.
    pub fn post_signed_to(&self, cluster: &Cluster, payload: &serde_json::Value) -> Result<Answer, String> {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = whatsapp_cloud::signature::sign(self.app_secret.as_bytes(), &body);
        try_http_post(&cluster.webhook_url(&self.name), &body, Some(&signature))
    }
}

/// Runs `sql` on the shared cluster, expecting an ERROR: its message and hint.
pub fn error_of(sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> (String, String) {
    let e = cluster().connect().query(sql, params).unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("not a database error: {e}"));
    (db.message().to_string(), db.hint().unwrap_or_default().to_string())
}

/// Calls `f` until it returns `Some`, or [`DEADLINE`] passes.
pub fn poll<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_within(DEADLINE, f)
}

/// [`poll`] with a deadline of its own, for what takes longer by design (a chaos test's load).
pub fn poll_within<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection that LISTENs on `channels`, for tests that must see notifications arrive.
pub struct Listener {
    client: Client,
}

impl Listener {
    pub fn new(channels: &[&str]) -> Listener {
        let mut client = cluster().connect();
        for c in channels {
            client.batch_execute(&format!("LISTEN {c}")).unwrap();
        }
        Listener { client }
    }

    /// The next notification whose payload satisfies `pred`, as (channel, payload JSON).
    pub fn next_matching(
        &mut self,
        pred: impl Fn(&str, &serde_json::Value) -> bool,
    ) -> Option<(String, serde_json::Value)> {
        let deadline = Instant::now() + DEADLINE;
        let mut notifications = self.client.notifications();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let n = notifications.timeout_iter(left).next().ok()??;
            let payload: serde_json::Value = serde_json::from_str(n.payload()).unwrap();
            if pred(n.channel(), &payload) {
                return Some((n.channel().to_string(), payload));
            }
        }
    }
}

/// Every table of the extension that pg_dump keeps (its configuration tables), with its row
/// count and a digest of its rows: equal digests, equal contents.
pub fn table_digests(db: &mut Client) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = db
        .query(
            "SELECT c.relname::text FROM pg_extension e, unnest(e.extconfig) AS u(rel) JOIN pg_class c ON c.oid = u.rel
              WHERE e.extname = 'whatsapp_channel' AND c.relkind = 'r' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    tables
        .into_iter()
        .map(|t| {
            let row = db
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) FROM {t} x"
                    ),
                    &[],
                )
                .unwrap();
            (t, row.get(0), row.get(1))
        })
        .collect()
}

/// How many of the messages `ids` are not (yet) sent: neither sent, delivered nor read.
pub fn unsent(db: &mut Client, ids: &[i64]) -> i64 {
    db.query_one(
        "SELECT count(*) FROM wa_messages WHERE id = ANY($1) AND status NOT IN ('sent', 'delivered', 'read')",
        &[&ids],
    )
    .unwrap()
    .get(0)
}
