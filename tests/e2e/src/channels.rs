//! Channels: made with fresh credentials, and posting signed webhooks as Meta does; and the
//! channels for which the simulator posts status webhooks back.

use crate::http::{Answer, try_http_post};
use crate::{Cluster, cluster};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use wa_sim::graph::{Directory, WebhookTarget};

impl Cluster {
    /// `http://127.0.0.1:<port>/webhook/<channel>`.
    pub fn webhook_url(&self, channel: &str) -> String {
        format!("http://{}/webhook/{channel}", self.listener)
    }

    /// Creates a channel with fresh, valid credentials; the Graph API simulator requires its token.
    pub fn add_channel(&self, prefix: &str) -> Channel {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut channel = Channel {
            id: 0,
            name: format!("{prefix}-{n}"),
            phone_number_id: format!("1065403522{:05}", n),
            access_token: format!("EAAGsimulated{n:08}token"),
            app_secret: format!("{:032x}", 0xabc0_0000u64 + u64::from(n)),
            verify_token: format!("verify_{prefix}_{n}"),
        };
        channel.id = self
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
        assert!(channel.id > 0);
        self.graph.require_token(&channel.phone_number_id, &channel.access_token);
        channel
    }
}

/// The simulator's status webhooks go only to channels a test asked for, so that the other
/// tests see exactly the statuses they post themselves.
#[derive(Default)]
pub(crate) struct StatusTargets(pub(crate) Mutex<HashMap<String, WebhookTarget>>);

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
    /// wa_channels.id: what notifications name a channel by.
    pub id: i64,
    pub name: String,
    pub phone_number_id: String,
    pub access_token: String,
    pub app_secret: String,
    pub verify_token: String,
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
