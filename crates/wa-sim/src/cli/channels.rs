//! The channels the simulator reads from the database: their credentials, the listener's
//! address, and where each business number's status webhooks go.

use std::collections::HashMap;
use std::sync::Mutex;
use wa_sim::graph::{Directory, WebhookTarget};

/// A channel as the simulator needs it.
#[derive(Clone)]
pub(crate) struct ChannelRow {
    pub(crate) name: String,
    pub(crate) phone_number_id: String,
    pub(crate) access_token: String,
    pub(crate) app_secret: String,
}

/// Reads channels and the listener's address from the database.
pub(crate) fn read_channels(dsn: &str) -> Result<(Vec<ChannelRow>, String), String> {
    let mut client =
        postgres::Client::connect(dsn, postgres::NoTls).map_err(|e| format!("connecting to {dsn}: {e}"))?;
    let rows = client
        .query(
            "SELECT c.name, c.phone_number_id, s.access_token, s.app_secret
               FROM wa_channels c JOIN wa_channel_secrets s ON s.channel_id = c.id",
            &[],
        )
        .map_err(|e| format!("reading channels: {e}"))?;
    let listen: Option<String> = client
        .query_one("SELECT current_setting('whatsapp_channel.listen_address', true)", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    let channels = rows
        .iter()
        .map(|r| ChannelRow { name: r.get(0), phone_number_id: r.get(1), access_token: r.get(2), app_secret: r.get(3) })
        .collect();
    Ok((channels, format!("http://{}", listen.unwrap_or_else(|| "127.0.0.1:8080".into()))))
}

/// Looks channels up in the database, again on a miss (a channel added after start).
pub(crate) struct DbDirectory {
    pub(crate) dsn: String,
    pub(crate) webhook_base: Option<String>,
    pub(crate) cache: Mutex<HashMap<String, WebhookTarget>>,
}

impl DbDirectory {
    fn refresh(&self) -> Result<(), String> {
        let (channels, listener) = read_channels(&self.dsn)?;
        let base = self.webhook_base.clone().unwrap_or(listener);
        let mut cache = self.cache.lock().unwrap();
        for c in channels {
            let url = format!("{}/webhook/{}", base.trim_end_matches('/'), c.name);
            cache.insert(c.phone_number_id, WebhookTarget { url, app_secret: c.app_secret });
        }
        Ok(())
    }
}

impl Directory for DbDirectory {
    fn lookup(&self, phone_number_id: &str) -> Option<WebhookTarget> {
        if let Some(t) = self.cache.lock().unwrap().get(phone_number_id) {
            return Some(t.clone());
        }
        if let Err(e) = self.refresh() {
            eprintln!("wa-sim: {e}");
        }
        self.cache.lock().unwrap().get(phone_number_id).cloned()
    }
}
