//! Which channel a change of a webhook is for: the same rule for live POSTs (the listener's
//! HTTP threads and main thread) and for replay.

use crate::channels::ChannelCredentials;

/// The channel a change is for. Meta has one callback URL per app, so a POST to one channel's
/// URL may carry updates for another number of the same app: those are routed by
/// `metadata.phone_number_id`, but only to a channel with the same app secret (the same app);
/// `None` means no such channel exists.
pub fn route<'a>(
    channels: impl IntoIterator<Item = &'a ChannelCredentials>,
    from: &ChannelCredentials,
    phone_number_id: Option<&str>,
) -> Option<i64> {
    match phone_number_id {
        None => Some(from.id),
        Some(p) if p == from.phone_number_id => Some(from.id),
        Some(p) => {
            channels.into_iter().find(|c| c.phone_number_id == p && c.app_secret == from.app_secret).map(|c| c.id)
        }
    }
}
