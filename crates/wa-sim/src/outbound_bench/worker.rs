//! The delivery worker's CPU time, read from /proc while a part runs.

/// The delivery worker's process, to read its CPU time from /proc (when the database is local).
pub(super) struct Worker(Option<i32>);

impl Worker {
    pub(super) fn find(client: &mut postgres::Client) -> Worker {
        let pid = client
            .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'whatsapp_channel delivery'", &[])
            .ok()
            .flatten()
            .map(|r| r.get::<_, i32>(0));
        Worker(pid.filter(|p| std::path::Path::new(&format!("/proc/{p}/task/{p}/stat")).exists()))
    }

    /// CPU seconds so far: (main thread, whole process).
    pub(super) fn cpu(&self) -> Option<(f64, f64)> {
        let pid = self.0?;
        let read = |path: String| -> Option<f64> {
            let stat = std::fs::read_to_string(path).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
            let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0) // USER_HZ is 100 on Linux
        };
        Some((read(format!("/proc/{pid}/task/{pid}/stat"))?, read(format!("/proc/{pid}/stat"))?))
    }

    pub(super) fn used_since(&self, before: Option<(f64, f64)>) -> Option<(f64, f64)> {
        let (b, a) = (before?, self.cpu()?);
        Some((a.0 - b.0, a.1 - b.1))
    }
}
