//! The PostgreSQL programs the harness runs (initdb, pg_ctl, ...): where they are, and how to
//! run them as the server's owner.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether this initdb turns data checksums on unless told not to (PostgreSQL 18 and later).
pub(crate) fn initdb_checksums_default_on(bin: &Path) -> bool {
    let out = Command::new(bin.join("initdb")).arg("--help").output().unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--no-data-checksums")
}

/// The binaries of the PostgreSQL that PG_CONFIG names.
pub fn bindir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--bindir").output().unwrap_or_else(|e| panic!("{pg_config}: {e}"));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub(crate) fn sharedir() -> PathBuf {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin/pg_config".into());
    let out = Command::new(&pg_config).arg("--sharedir").output().unwrap();
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A command that runs as the server's owner: `postgres` when we are root (Postgres refuses root).
pub(crate) fn as_owner(program: &Path) -> Command {
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
