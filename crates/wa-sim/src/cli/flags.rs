//! `--key value` and `--switch` flags, as every subcommand takes them.

use std::collections::HashMap;

/// `--key value` and `--switch` flags.
pub(crate) struct Flags(HashMap<String, String>);

impl Flags {
    pub(crate) fn parse(args: &[String]) -> Flags {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let key = args[i].trim_start_matches("--").to_string();
            match args.get(i + 1).filter(|v| !v.starts_with("--")) {
                Some(value) => {
                    map.insert(key, value.clone());
                    i += 2;
                }
                None => {
                    map.insert(key, String::new());
                    i += 1;
                }
            }
        }
        Flags(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub(crate) fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        self.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{key} {v:?} is not a number")))
    }

    pub(crate) fn dsn(&self) -> Option<String> {
        self.get("dsn").map(str::to_string).or_else(|| std::env::var("WA_DSN").ok())
    }
}
