//! Media: inbound files downloaded by the delivery worker's senders ([`download`], jobs in
//! [`store`]), kept for `whatsapp_channel.media_retention` and read with `wa_media_content()`
//! (sql/media.sql); outbound files uploaded from a session for a media id ([`upload`]).

pub mod download;
pub mod store;
mod upload;
