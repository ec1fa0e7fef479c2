//! The [`Cluster`]: a PostgreSQL server of its own with `whatsapp_channel` preloaded and a Graph
//! API simulator, made by initdb, as a standby, or by pg_upgrade; and the shared one of a test
//! binary.

use crate::channels::StatusTargets;
use crate::poll::poll;
use crate::programs::{as_owner, bindir, free_port, initdb_checksums_default_on, is_root, run, sharedir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use wa_sim::graph::{GraphSim, Options};

pub struct Cluster {
    pub(crate) dir: PathBuf,
    /// The PostgreSQL binaries it runs on (`pg_config --bindir` of PG_CONFIG when it started).
    pub(crate) bin: PathBuf,
    pub(crate) port: u16,
    pub listener: String,
    pub graph: GraphSim,
    /// Channels for which the simulator posts sent/delivered/read webhooks back.
    pub(crate) status_targets: Arc<StatusTargets>,
    _watchdog: Child,
}

/// The cluster of this test binary.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(Options::default(), "", None))
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
}
