//! A running cluster's server: stopping, starting, promoting, crashing it and its backends,
//! and its log and files.

use crate::Cluster;
use crate::poll::poll;
use crate::programs::{as_owner, is_root, run, sharedir};
use std::path::PathBuf;
use std::process::Command;

impl Cluster {
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

    /// The path of an extension script file (`whatsapp_channel--0.1.0.sql`) where the server looks.
    pub fn extension_file(name: &str) -> PathBuf {
        sharedir().join("extension").join(name)
    }
}
